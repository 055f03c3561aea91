import type { Subscription } from "@nats-io/nats-core";
import { describe, expect, it } from "vitest";
import { MIN_SERVER_VERSION, statusLog, versionAtLeast, withoutCredentials } from "../../src/nats/index.js";

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

describe("withoutCredentials", () => {
  it("takes the user and password out of every URL of a NATS_URL, and leaves the rest as it was", () => {
    expect(withoutCredentials("nats://nerve:s3cret@nats-1:4222, tls://u:p%40ss@nats-2:4222,nats://nats-3:4222")).toBe("nats://nats-1:4222,tls://nats-2:4222,nats://nats-3:4222");
    expect(withoutCredentials("nats://token@127.0.0.1:4222")).toBe("nats://127.0.0.1:4222");
    expect(withoutCredentials("https://user:pw@otel.example:4318/v1/traces")).toBe("https://otel.example:4318/v1/traces");
    expect(withoutCredentials("nats://127.0.0.1:4222")).toBe("nats://127.0.0.1:4222");
  });
});

describe("statusLog", () => {
  it("logs what each status event says, at its level, without credentials; routine ones not at all", () => {
    expect(statusLog({ type: "disconnect", server: "nats://nerve:s3cret@nats-1:4222" })).toEqual({ level: "warn", fields: { nats: "disconnect", server: "nats://nats-1:4222" } });
    expect(statusLog({ type: "ldm", server: "nats-2:4222" })).toEqual({ level: "warn", fields: { nats: "ldm", server: "nats-2:4222" } });
    expect(statusLog({ type: "error", error: new Error("Permissions Violation for Publish to \"x\"") })).toEqual({ level: "error", fields: { nats: "error", error: "Permissions Violation for Publish to \"x\"" } });
    const sub = { getSubject: () => "events.>" } as unknown as Subscription;
    expect(statusLog({ type: "slowConsumer", sub, pending: 70_000 })).toEqual({ level: "warn", fields: { nats: "slowConsumer", subject: "events.>", pending: 70_000 } });
    expect(statusLog({ type: "staleConnection" })).toEqual({ level: "warn", fields: { nats: "staleConnection" } });
    for (const type of ["reconnecting", "forceReconnect", "close"] as const) expect(statusLog({ type })).toBeUndefined();
    expect(statusLog({ type: "ping", pendingPings: 1 })).toBeUndefined();
  });
});
