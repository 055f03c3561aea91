import { describe, expect, it } from "vitest";
import { MIN_SERVER_VERSION, versionAtLeast } from "../../src/nats/index.js";

describe("versionAtLeast", () => {
  it.each([
    ["2.9.10", true],
    ["2.9.0", true],
    ["2.10.1", true],
    ["3.0.0", true],
    ["2.8.4", false],
    ["1.4.1", false],
    ["2.9.0-beta.1", true],
    ["garbage", false],
  ])("%s against the minimum %s", (v, ok) => {
    expect(versionAtLeast(v, MIN_SERVER_VERSION)).toBe(ok);
  });
});
