import { describe, expect, it } from "vitest";
import { EventId } from "../../contracts/index.js";
import { uuidv7 } from "../../src/runtime/index.js";

describe("uuidv7", () => {
  it("makes contract event ids: lower-case canonical UUID version 7 with the RFC variant", () => {
    for (let i = 0; i < 1000; i++) expect(EventId.safeParse(uuidv7()).success).toBe(true);
  });

  it("carries the millisecond timestamp in its first 48 bits", () => {
    const ms = Date.now() + 3_600_000; // later than any id made so far, so the clock is taken as it is
    const id = uuidv7(ms);
    expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(ms);
  });

  it("is unique and strictly increasing within the process, also many per millisecond", () => {
    const ids = Array.from({ length: 200_000 }, () => uuidv7());
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) if (!(ids[i]! > ids[i - 1]!)) throw new Error(`not increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
  });

  it("keeps increasing when the clock goes back", () => {
    const a = uuidv7(Date.now() + 60_000);
    const b = uuidv7(Date.now());
    expect(b > a).toBe(true);
  });
});
