import { SignJWT, UnsecuredJWT, exportSPKI } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenVerifier, openJwks, type KeySource } from "../../src/gateway/index.js";
import { createLogger } from "../../src/log/index.js";
import { JwksServer, idpKey, idpToken, type IdpKey } from "../support/jwks.js";

const SECRET = "auth-unit-test-secret-0123456789";
const logger = createLogger("silent");
let rsa: IdpKey, ec: IdpKey, ed: IdpKey, stranger: IdpKey;
let idp: JwksServer;
let jwks: KeySource;

beforeAll(async () => {
  [rsa, ec, ed, stranger] = await Promise.all([idpKey("RS256", "rsa-1"), idpKey("ES256", "ec-1"), idpKey("EdDSA", "ed-1"), idpKey("RS256", "rsa-1")]);
  idp = await JwksServer.start([rsa, ec, ed]);
  jwks = await openJwks(idp.url, { logger });
});
afterAll(() => idp.close());

const verifier = (opts: { secret?: boolean; issuer?: string; audience?: string } = {}) =>
  new TokenVerifier({ jwks, ...(opts.secret ? { secret: SECRET } : {}), issuer: opts.issuer, audience: opts.audience });
/** The refusal message, or "accepted". */
const outcome = (v: TokenVerifier, token: string) => v.verify(token).then(() => "accepted", (err: Error) => err.message);
const hs256 = (secret: Uint8Array | string, sub = "ada") =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(sub).setExpirationTime("1h").sign(typeof secret === "string" ? new TextEncoder().encode(secret) : secret);
const now = () => Math.floor(Date.now() / 1000);

describe("TokenVerifier with a JWKS", () => {
  it("accepts RS256, ES256 and EdDSA tokens whose key the JWKS publishes", async () => {
    const v = verifier();
    for (const key of [rsa, ec, ed]) {
      const id = await v.verify(await idpToken(key, { sub: `user-${key.alg}` }));
      expect(id.userId).toBe(`user-${key.alg}`);
      expect(id.exp).toBeGreaterThan(now());
    }
  });

  it("accepts HS256 tokens too when a secret is configured beside the JWKS, and only then", async () => {
    expect((await verifier({ secret: true }).verify(await hs256(SECRET))).userId).toBe("ada");
    expect(await outcome(verifier(), await hs256(SECRET))).toBe("invalid token");
  });

  it("refuses expired tokens, and tokens from another issuer or for another audience", async () => {
    const v = verifier({ issuer: "https://idp.example", audience: "nerve" });
    const good = { iss: "https://idp.example", aud: "nerve" };
    expect(await outcome(v, await idpToken(rsa, { claims: good }))).toBe("accepted");
    expect(await outcome(v, await idpToken(rsa, { claims: good, expIn: -60 }))).toBe("token expired");
    expect(await outcome(v, await idpToken(rsa, { claims: { ...good, iss: "https://evil.example" } }))).toBe("invalid token claim iss");
    expect(await outcome(v, await idpToken(rsa, { claims: { ...good, aud: "another-app" } }))).toBe("invalid token claim aud");
    expect(await outcome(v, await idpToken(rsa, { claims: { aud: "nerve" } }))).toBe("invalid token claim iss");
    // Without an exp: required for every algorithm.
    const noExp = await new SignJWT(good).setProtectedHeader({ alg: "RS256", kid: rsa.kid }).setSubject("ada").sign(rsa.privateKey);
    expect(await outcome(v, noExp)).toBe("invalid token claim exp");
  });

  it("allows a few seconds of clock skew on nbf, no more, and none on exp", async () => {
    const v = verifier();
    // A live socket is closed at exp: a token past it, however recently, is refused.
    expect(await outcome(v, await idpToken(ec, { expIn: -3 }))).toBe("token expired");
    expect(await outcome(v, await idpToken(ec, { expIn: 30 }))).toBe("accepted");
    expect(await outcome(v, await idpToken(ec, { claims: { nbf: now() + 3 } }))).toBe("accepted");
    expect(await outcome(v, await idpToken(ec, { expIn: -10 }))).toBe("token expired");
    expect(await outcome(v, await idpToken(ec, { claims: { nbf: now() + 60 } }))).toBe("invalid token claim nbf");
  });

  it("refuses alg none, whatever else is configured", async () => {
    const none = new UnsecuredJWT({}).setSubject("ada").setExpirationTime("1h").encode();
    expect(await outcome(verifier(), none)).toBe("invalid token");
    expect(await outcome(verifier({ secret: true }), none)).toBe("invalid token");
  });

  it("refuses an HS256 token that uses an identity provider's public key as its HMAC secret", async () => {
    // The classic confusion: the attacker knows the public key (it is published) and signs with it.
    const pem = await exportSPKI(rsa.publicKey);
    for (const secret of [pem, JSON.stringify(rsa.jwk), rsa.jwk.n!]) {
      const forged = await hs256(secret, "mallory");
      expect(await outcome(verifier(), forged)).toBe("invalid token");
      expect(await outcome(verifier({ secret: true }), forged)).toBe("invalid token");
      const withKid = await new SignJWT({}).setProtectedHeader({ alg: "HS256", kid: rsa.kid }).setSubject("mallory").setExpirationTime("1h").sign(new TextEncoder().encode(secret));
      expect(await outcome(verifier({ secret: true }), withKid)).toBe("invalid token");
    }
  });

  it("refuses a token signed by a key the JWKS does not publish, even under a published kid", async () => {
    expect(await outcome(verifier(), await idpToken(stranger))).toBe("invalid token");
    expect(await outcome(verifier(), await idpToken(stranger, { header: { kid: "rsa-9" } }))).toBe("unknown token key");
  });

  it("refuses a token whose alg does not fit the key its kid names", async () => {
    // An ES256 token naming the RSA key, an EdDSA token naming the EC key: no key matches.
    expect(await outcome(verifier(), await idpToken(ec, { header: { kid: rsa.kid } }))).toBe("unknown token key");
    expect(await outcome(verifier(), await idpToken(ed, { header: { kid: ec.kid } }))).toBe("unknown token key");
    // And algorithms outside RS256/ES256/EdDSA are refused before any key is looked at.
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    for (const alg of ["PS256", "RS512", "ES384", "HS512"]) {
      const token = `${b64({ alg, kid: rsa.kid })}.${b64({ sub: "ada", exp: now() + 60 })}.${Buffer.alloc(256, 1).toString("base64url")}`;
      expect(await outcome(verifier({ secret: true }), token)).toBe("invalid token");
    }
  });

  it.each([["two trailing spaces", "  "], ["a tab", "\t"], ["a newline", "\n"], ["a fourth part", ".x"]])("refuses a valid token followed by %s: a compact JWS is three base64url parts and nothing else", async (_what, tail) => {
    const v = verifier({ secret: true });
    const token = await hs256(SECRET);
    expect(await outcome(v, token)).toBe("accepted");
    expect(await outcome(v, token + tail)).toBe("invalid token");
    expect(await outcome(v, ` ${token}`)).toBe("invalid token");
    expect(await outcome(v, await idpToken(rsa) + tail)).toBe("invalid token");
  });

  it("needs a secret or a JWKS, and signs development tokens only with a secret", async () => {
    expect(() => new TokenVerifier({})).toThrow(/secret or a JWKS/);
    await expect(verifier().sign("ada", 60)).rejects.toThrow(/no JWT secret/);
    const v = verifier({ secret: true });
    expect((await v.verify(await v.sign("ada", 60))).userId).toBe("ada");
  });
});
