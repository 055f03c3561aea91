import { exportSPKI } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway } from "../../src/gateway/index.js";
import { createLogger } from "../../src/log/index.js";
import { startTestNerve, type TestNerve } from "../support/index.js";
import { JwksServer, idpKey, idpToken, type IdpKey } from "../support/jwks.js";
import { SECRET, TestClient, token, upgradeStatus } from "./support.js";

// The whole path: environment → loadConfig → startNerve → the gateway's upgrade, in production mode
// with a JWKS and no HS256 secret at all.
const ISSUER = "https://idp.example/";
let idp: JwksServer;
let t: TestNerve;
let rsa: IdpKey, ed: IdpKey, stranger: IdpKey;
let port: number;

beforeAll(async () => {
  [rsa, ed, stranger] = await Promise.all([idpKey("RS256", "rsa-1"), idpKey("EdDSA", "ed-1"), idpKey("RS256", "rsa-1")]);
  idp = await JwksServer.start([rsa, ed]);
  t = await startTestNerve({ NODE_ENV: "production", NERVE_JWT_JWKS: idp.url, NERVE_JWT_ISSUER: ISSUER, NERVE_JWT_AUDIENCE: "nerve" });
  port = t.nerve.gateway.port;
});
afterAll(async () => {
  await t?.close();
  await idp?.close();
});

const claims = { iss: ISSUER, aud: "nerve" };

describe("tokens from an identity provider", () => {
  it("welcomes learners with RS256 and EdDSA tokens checked against the JWKS", async () => {
    const r = await TestClient.connect(port, { token: await idpToken(rsa, { sub: "ada", claims }) });
    expect((await r.welcome()).user_id).toBe("ada");
    const e = await TestClient.connect(port, {}, { Authorization: `Bearer ${await idpToken(ed, { sub: "bob", claims })}` });
    expect((await e.welcome()).user_id).toBe("bob");
    await Promise.all([r.close(), e.close()]);
  });

  it("refuses the upgrade with 401 for a bad token", async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const cases = {
      "another issuer": await idpToken(rsa, { claims: { ...claims, iss: "https://evil.example/" } }),
      "no audience": await idpToken(ed, { claims: { iss: ISSUER } }),
      expired: await idpToken(rsa, { claims, expIn: -60 }),
      "a key the JWKS does not publish": await idpToken(stranger, { claims }),
      "HS256 with no secret configured": await token("ada", 3600, SECRET),
      "HS256 with the public key as its secret": await token("ada", 3600, pem),
    };
    for (const [what, bad] of Object.entries(cases)) expect([what, await upgradeStatus(port, { token: bad })]).toEqual([what, 401]);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/nerve_gateway_closes_total\{reason="unauthorized"\} 6/);
    expect(idp.hits).toBeLessThanOrEqual(2);
  });

  it("does not start with a JWKS file it cannot use", async () => {
    const gateway = startGateway({ nc: t.client, port: 0, host: "127.0.0.1", jwks: "/nonexistent/jwks.json", logger: createLogger("silent") });
    await expect(gateway).rejects.toThrow(/^NERVE_JWT_JWKS cannot be read: ENOENT/);
  });
});

describe("a gateway stopping while a token is verified", () => {
  it("opens no socket once stopped, even when the verification (a JWKS fetch) ends after the stop", async () => {
    const fresh = await idpKey("RS256", "rsa-late");
    const server = await JwksServer.start([fresh]);
    // The gateway's first read of the JWKS answers late: the verification waits for it.
    server.delayMs = 600;
    const gw = await startGateway({ nc: t.client, port: 0, host: "127.0.0.1", jwks: server.url, jwtIssuer: ISSUER, jwtAudience: "nerve", logger: createLogger("silent") });
    try {
      const status = upgradeStatus(gw.port, { token: await idpToken(fresh, { sub: "late", claims }) });
      await new Promise((r) => setTimeout(r, 200));
      await gw.stop();
      expect(await status).toBe(503);
      expect(gw.connections()).toBe(0);
    } finally {
      await gw.stop();
      await server.close();
    }
  });
});
