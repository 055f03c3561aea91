import { describe, expect, it } from "vitest";
import { DEV_JWT_SECRET, loadConfig } from "../../src/config/index.js";

describe("loadConfig", () => {
  it("applies the contract's defaults", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ NATS_URL: "nats://127.0.0.1:4222", NERVE_DB: "sqlite:./data/nerve.sqlite", NERVE_HTTP_PORT: 8080, LOG_LEVEL: "info" });
    expect(c.jwtSecret).toBe(DEV_JWT_SECRET);
    expect(c.jwtSecretIsDevelopment).toBe(true);
  });

  it("accepts a postgres URL and several NATS URLs", () => {
    const c = loadConfig({ NERVE_DB: "postgres://u@localhost/db", NATS_URL: "nats://a:4222,nats://b:4222" });
    expect(c.NERVE_DB).toBe("postgres://u@localhost/db");
    expect(c.NATS_URL).toContain(",");
  });

  it("requires NERVE_JWT_SECRET in production", () => {
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(/NERVE_JWT_SECRET: is required when NODE_ENV=production/);
    expect(loadConfig({ NODE_ENV: "production", NERVE_JWT_SECRET: "a-long-enough-secret" }).jwtSecretIsDevelopment).toBe(false);
  });

  it("names every bad variable at once", () => {
    expect(() => loadConfig({ NERVE_DB: "mysql://x", NERVE_HTTP_PORT: "abc", LOG_LEVEL: "loud" })).toThrow(/NERVE_DB[\s\S]*NERVE_HTTP_PORT[\s\S]*LOG_LEVEL/);
  });
});
