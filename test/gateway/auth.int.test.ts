import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { until, type TestNerve } from "../support/index.js";
import { SECRET, TestClient, startTestGateway, token, upgradeStatus, useNerveAndGateway, type TestGateway } from "./support.js";

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

/** The status and body of a refused upgrade; "101" when it opened (the socket is then dropped). */
function refusal(port: number, tok: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws?token=${tok}`);
    ws.once("open", () => {
      ws.terminate();
      resolve("101");
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => {
        ws.terminate();
        resolve(`${res.statusCode} ${body}`);
      });
    });
    ws.once("error", reject);
  });
}

/** Upgrades sent together, one per token: the sockets that opened, and the HTTP statuses of those refused. */
async function upgradeBurst(port: number, tokens: string[]): Promise<{ opened: TestClient[]; refused: (number | undefined)[] }> {
  const burst = await Promise.all(tokens.map((tok) => TestClient.connect(port, { token: tok }).then((c) => c, (err: { status?: number }) => err.status)));
  return { opened: burst.filter((b): b is TestClient => b instanceof TestClient), refused: burst.filter((b): b is number | undefined => !(b instanceof TestClient)) };
}

describe("sockets per user", () => {
  it("refuses a learner's socket past the cap with 429, counts it, and takes one again once another closed", async () => {
    const small = await startTestGateway(t.nats.url, { maxSocketsPerUser: 3 });
    try {
      const gil = await token("gil");
      const open = [];
      for (let i = 0; i < 3; i++) open.push(await TestClient.ready(small.port, "gil"));
      expect(await refusal(small.port, gil)).toBe("429 too many sockets: at most 3 open at once per user; close one first");
      // Another learner is not affected.
      const hal = await TestClient.ready(small.port, "hal");
      // One of gil's closes: a new one is taken.
      await open.pop()!.close();
      await until("the gateway saw the close", () => small.connections() === 3);
      open.push(await TestClient.ready(small.port, "gil"));
      expect(await refusal(small.port, gil)).toMatch(/^429 /);
      const metrics = await (await fetch(`http://127.0.0.1:${small.port}/metrics`)).text();
      expect(metrics).toMatch(/nerve_gateway_closes_total\{reason="too_many_sockets"\} 2/);
      await Promise.all([...open, hal].map((c) => c.close()));
      await until("every socket closed", () => small.connections() === 0);
      // Upgrades that arrive together: the cap holds (each is counted as it opens).
      const { opened, refused } = await upgradeBurst(small.port, Array.from({ length: 6 }, () => gil));
      expect(opened).toHaveLength(3);
      expect(refused.filter((status) => status === 429)).toHaveLength(3);
      await Promise.all(opened.map((c) => c.close()));
    } finally {
      await small.close();
    }
  });
});

describe("sockets per gateway", () => {
  it("refuses any learner's socket past the gateway's budget with 503 and Retry-After, and takes one again once another closed", async () => {
    // Was: no bound over all learners, so enough of them took every file descriptor: uWS's accept then
    // failed on every turn of its loop (a core spinning) and nothing else in the process could open a file.
    const small = await startTestGateway(t.nats.url, { maxSockets: 2 });
    try {
      const open = [await TestClient.ready(small.port, "ida"), await TestClient.ready(small.port, "jo")];
      expect(await refusal(small.port, await token("kim"))).toBe("503 this gateway has its most sockets open (2); retry shortly, or another instance");
      const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${small.port}/v1/ws`);
        ws.once("unexpected-response", (_req, res) => {
          resolve(res.headers);
          ws.terminate();
        });
        ws.once("error", reject);
      });
      expect(headers["retry-after"]).toBe("5");
      await open.pop()!.close();
      await until("the gateway saw the close", () => small.connections() === 1);
      open.push(await TestClient.ready(small.port, "kim"));
      const metrics = await (await fetch(`http://127.0.0.1:${small.port}/metrics`)).text();
      expect(metrics).toMatch(/nerve_gateway_closes_total\{reason="instance_full"\} 2/);
      await Promise.all(open.map((c) => c.close()));
      // Upgrades that arrive together: the budget holds (checked again once each token passed).
      await until("every socket closed", () => small.connections() === 0);
      const { opened, refused } = await upgradeBurst(small.port, await Promise.all(["l1", "l2", "l3", "l4", "l5"].map((u) => token(u))));
      expect(opened).toHaveLength(2);
      expect(refused.filter((status) => status === 503)).toHaveLength(3);
      await Promise.all(opened.map((c) => c.close()));
    } finally {
      await small.close();
    }
  });
});
