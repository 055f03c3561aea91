import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import type { TestNerve } from "../support/index.js";
import { SECRET, TestClient, token, upgradeStatus, useNerveAndGateway, type TestGateway } from "./support.js";

let t: TestNerve;
let gw: TestGateway;
useNerveAndGateway((started) => ({ t, gw } = started));

const key = new TextEncoder().encode(SECRET);
const refused = (query: Record<string, string>, headers: Record<string, string> = {}) => upgradeStatus(gw.port, query, headers);

describe("authentication", () => {
  it("refuses the upgrade with 401 when the token is missing, malformed, badly signed or expired", async () => {
    expect(await refused({})).toBe(401);
    expect(await refused({ token: "not-a-jwt" })).toBe(401);
    expect(await refused({ token: await token("ada", 3600, "another-secret-0123456789") })).toBe(401);
    expect(await refused({ token: await token("ada", -60) })).toBe(401);
    // Required claims and algorithm.
    const noExp = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("ada").sign(key);
    expect(await refused({ token: noExp })).toBe(401);
    const noSub = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(key);
    expect(await refused({ token: noSub })).toBe(401);
    const badSub = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("a.b").setExpirationTime("1h").sign(key);
    expect(await refused({ token: badSub })).toBe(401);
    const hs512 = await new SignJWT({}).setProtectedHeader({ alg: "HS512" }).setSubject("ada").setExpirationTime("1h").sign(new TextEncoder().encode(SECRET.repeat(3)));
    expect(await refused({ token: hs512 })).toBe(401);
    expect(await refused({}, { Authorization: `Basic ${Buffer.from("ada:pw").toString("base64")}` })).toBe(401);
    const metrics = await (await fetch(`http://127.0.0.1:${gw.port}/metrics`)).text();
    expect(metrics).toMatch(/nerve_gateway_closes_total\{reason="unauthorized"\} 9/);
  });

  it("refuses a token that expired seconds ago with 401, as the live socket's expiry would close it at once", async () => {
    expect(await refused({ token: await token("ada", -3) })).toBe(401);
    const fractional = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("ada").setExpirationTime(Date.now() / 1000 - 0.5).sign(key);
    expect(await refused({ token: fractional })).toBe(401);
  });

  it("accepts a valid token in the query or in an Authorization: Bearer header", async () => {
    const q = await TestClient.connect(gw.port, { token: await token("ada") });
    expect((await q.welcome()).user_id).toBe("ada");
    const h = await TestClient.connect(gw.port, {}, { Authorization: `Bearer ${await token("bob")}` });
    expect((await h.welcome()).user_id).toBe("bob");
    await Promise.all([q.close(), h.close()]);
  });

  it("closes a live socket with 4401 when its token expires", async () => {
    const c = await TestClient.connect(gw.port, { token: await token("ada", 2) });
    await c.welcome();
    const closed = await c.closedWith(6_000);
    expect(closed.code).toBe(4401);
  });

  it("closes a live socket with 4401 when a fractional exp passes, and refuses one already past", async () => {
    // The JWT spec allows a non-integer NumericDate, and jose accepts it.
    const fractional = (secondsFromNow: number) =>
      new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("ada").setExpirationTime(Math.floor(Date.now() / 1000) + secondsFromNow + 0.5).sign(key);
    expect(await refused({ token: await fractional(-60) })).toBe(401);
    const c = await TestClient.connect(gw.port, { token: await fractional(2) });
    await c.welcome();
    const closed = await c.closedWith(6_000);
    expect(closed).toMatchObject({ code: 4401, reason: "token expired" });
  });
});
