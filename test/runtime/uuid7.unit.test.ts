import { describe, expect, it } from "vitest";
import { EventId } from "../../contracts/index.js";
import { v7 } from "uuid";
import { uuidv7, uuidv7Floor } from "../../src/runtime/index.js";

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

describe("uuidv7Floor", () => {
  it("is the least UUIDv7 of its millisecond: ids made then sort at or after it, ids made before it before", () => {
    const zeros = new Uint8Array(16);
    const full = new Uint8Array(16).fill(0xff);
    for (const ms of [0, 1, 1_767_225_600_000, Date.parse("2026-03-01T09:00:00.123Z"), 2 ** 48 - 1]) {
      const floor = uuidv7Floor(ms);
      expect(EventId.safeParse(floor).success).toBe(true);
      // The uuid package's id of that millisecond with every other bit as low as a UUIDv7 allows.
      expect(floor).toBe(v7({ msecs: ms, seq: 0, random: zeros }));
      expect(v7({ msecs: ms, seq: 0x7fffffff, random: full }) >= floor).toBe(true);
      if (ms > 0) expect(v7({ msecs: ms - 1, seq: 0x7fffffff, random: full }) < floor).toBe(true);
      for (let i = 0; i < 100; i++) expect(v7({ msecs: ms }) >= floor).toBe(true);
    }
  });

  it("bounds this runtime's ids by the time they were made", () => {
    const ms = Date.now() + 7_200_000; // later than any id made so far, so the clock is taken as it is
    const id = uuidv7(ms);
    expect(id >= uuidv7Floor(ms) && id < uuidv7Floor(ms + 1)).toBe(true);
  });

  it("clamps a time outside the 48-bit field", () => {
    expect(uuidv7Floor(-5)).toBe("00000000-0000-7000-8000-000000000000");
    expect(uuidv7Floor(2 ** 50)).toBe("ffffffff-ffff-7000-8000-000000000000");
  });
});
