/** The test harness's free ports: a nats-server's client and monitoring ports are never the same one. */
import { describe, expect, it } from "vitest";
import { freePorts } from "./nats-server.js";

describe("freePorts", () => {
  it("hands out distinct ports in one call (two calls one after the other could repeat one)", async () => {
    for (let i = 0; i < 200; i++) {
      const ports = await freePorts(2);
      expect(new Set(ports).size).toBe(2);
      for (const p of ports) expect(p).toBeGreaterThan(0);
    }
  });
});
