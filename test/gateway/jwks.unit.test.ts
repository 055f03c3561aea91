import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TokenVerifier, openJwks } from "../../src/gateway/index.js";
import { createLogger } from "../../src/log/index.js";
import { backgroundFailures, sleep } from "../../src/supervision/index.js";
import { JwksServer, idpKey, idpToken, type IdpKey } from "../support/jwks.js";

const logger = createLogger("silent");
const COOLDOWN_MS = 300;
let a: IdpKey, b: IdpKey, c: IdpKey;
let dir: string;
const servers: JwksServer[] = [];

beforeAll(async () => {
  [a, b, c] = await Promise.all([idpKey("ES256", "key-a"), idpKey("EdDSA", "key-b"), idpKey("RS256", "key-c")]);
  dir = await mkdtemp(join(tmpdir(), "nerve-jwks-"));
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A JWKS server with `keys` (in `mode`, or closed) and a verifier against it. */
async function remote(keys: IdpKey[], opts: { cooldownMs?: number; timeoutMs?: number; mode?: JwksServer["mode"] | "closed" } = {}) {
  const idp = await JwksServer.start(keys);
  servers.push(idp);
  if (opts.mode === "closed") await idp.close();
  else if (opts.mode) idp.mode = opts.mode;
  const v = new TokenVerifier({ jwks: await openJwks(idp.url, { logger, cooldownMs: opts.cooldownMs ?? COOLDOWN_MS, timeoutMs: opts.timeoutMs }) });
  return { idp, v };
}
const outcome = (v: TokenVerifier, token: string) => v.verify(token).then(() => "accepted", (err: Error) => err.message);
const failures = () => backgroundFailures.get("jwks") ?? 0;

describe("a remote JWKS", () => {
  it("picks up a new kid on the first token that names it, once the cooldown has passed", async () => {
    const { idp, v } = await remote([a]);
    expect(await outcome(v, await idpToken(a))).toBe("accepted");
    expect(idp.hits).toBe(1);
    await sleep(COOLDOWN_MS + 50);
    idp.keys.push(b.jwk); // the identity provider rotates
    expect(await outcome(v, await idpToken(b))).toBe("accepted");
    expect(idp.hits).toBe(2);
    // Known kids are served from the cache.
    await Promise.all([a, b, a, b].map(async (k) => expect(await outcome(v, await idpToken(k))).toBe("accepted")));
    expect(idp.hits).toBe(2);
  });

  it("fetches a bounded number of times under a flood of unknown-kid tokens", async () => {
    const { idp, v } = await remote([a]);
    const forged = await idpToken(c, { header: { kid: "nobody" } });
    const started = Date.now();
    // A burst at once, then a steady stream for about a second.
    const burst = await Promise.all(Array.from({ length: 200 }, () => outcome(v, forged)));
    while (Date.now() - started < 1000) expect(await outcome(v, forged)).toBe("unknown token key");
    expect(new Set(burst)).toEqual(new Set(["unknown token key"]));
    const elapsed = Date.now() - started;
    // One fetch at start, then at most one per cooldown.
    expect(idp.hits).toBeGreaterThanOrEqual(2);
    expect(idp.hits).toBeLessThanOrEqual(2 + Math.ceil(elapsed / COOLDOWN_MS));
    expect(await outcome(v, await idpToken(a))).toBe("accepted");
  });

  it("refuses tokens, reports the failure and does not hang when the identity provider is down", async () => {
    const RETRY_MS = 2000; // the checks below fit in one retry interval even on a loaded machine
    const { idp, v } = await remote([a], { timeoutMs: 200, cooldownMs: RETRY_MS });
    expect(await outcome(v, await idpToken(a))).toBe("accepted"); // waits for the start-up fetch
    idp.mode = "down";
    await sleep(RETRY_MS + 50);
    const before = failures();
    // An unknown kid forces a fetch, which fails: reported, and the keys fetched before still serve.
    expect(await outcome(v, await idpToken(b))).toBe("unknown token key");
    expect(failures()).toBe(before + 1);
    const hits = idp.hits;
    expect(await outcome(v, await idpToken(a))).toBe("accepted");
    expect(await outcome(v, await idpToken(b))).toBe("unknown token key");
    expect(idp.hits).toBe(hits); // no fetch per token while it is down

    // Never reached: refused by the fetch's timeout (a hang would outlast the test's own), not an unhandled rejection.
    // A long cooldown (a retry every 5 s): the start-up fetch's failure and the token's are one, however slow the machine.
    const { v: cold } = await remote([a], { timeoutMs: 200, mode: "hang", cooldownMs: 60_000 });
    const { v: colder } = await remote([a], { timeoutMs: 200, mode: "closed", cooldownMs: 60_000 });
    expect(await outcome(cold, await idpToken(a))).toBe("token keys unavailable");
    expect(await outcome(colder, await idpToken(a))).toBe("token keys unavailable");
    expect(failures()).toBe(before + 3);
  });
});

describe("a JWKS file", () => {
  const file = async (name: string, content: unknown) => {
    const path = join(dir, name);
    await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
    return path;
  };
  const startupError = (path: string) => openJwks(path, { logger }).then(() => "opened", (err: Error) => err.message);

  it("verifies tokens, and is re-read for an unknown kid at most once per cooldown", async () => {
    const path = await file("rotating.json", { keys: [a.jwk] });
    const cooldownMs = 2 * COOLDOWN_MS; // the first checks must fit in one
    const v = new TokenVerifier({ jwks: await openJwks(path, { logger, cooldownMs }) });
    expect(await outcome(v, await idpToken(a))).toBe("accepted");
    await file("rotating.json", { keys: [a.jwk, b.jwk] });
    // Within the cooldown of the first read: not re-read yet.
    expect(await outcome(v, await idpToken(b))).toBe("unknown token key");
    await sleep(cooldownMs + 50);
    expect(await outcome(v, await idpToken(b))).toBe("accepted");
    // A broken rewrite keeps the keys read before, and is reported.
    const before = failures();
    await file("rotating.json", "{ not json");
    await sleep(cooldownMs + 50);
    expect(await outcome(v, await idpToken(c))).toBe("unknown token key");
    expect(failures()).toBe(before + 1);
    expect(await outcome(v, await idpToken(b))).toBe("accepted");
  });

  it("stops verifying a key taken out of the file by the first token after refreshMs (was: trusted until a restart)", async () => {
    const path = await file("revoking.json", { keys: [a.jwk, b.jwk] });
    const v = new TokenVerifier({ jwks: await openJwks(path, { logger, refreshMs: 100, cooldownMs: 60_000 }) });
    expect(await outcome(v, await idpToken(a))).toBe("accepted");
    // Key a compromised: taken out. A token naming a known kid never made the file be read again.
    await file("revoking.json", { keys: [b.jwk] });
    await sleep(150);
    expect(await outcome(v, await idpToken(a))).toBe("unknown token key");
    expect(await outcome(v, await idpToken(b))).toBe("accepted");
  });

  it("stops the start with a clear error when the file is missing, not JSON, or holds no usable key", async () => {
    expect(await startupError(join(dir, "absent.json"))).toMatch(/^NERVE_JWT_JWKS cannot be read: ENOENT/);
    expect(await startupError(await file("broken.json", "{ keys: "))).toMatch(/^NERVE_JWT_JWKS .*broken\.json is not valid JSON/);
    expect(await startupError(await file("array.json", [a.jwk]))).toMatch(/is not a JWK set \(no "keys" array\)/);
    expect(await startupError(await file("empty.json", { keys: [] }))).toMatch(/has no usable key/);
    expect(await startupError(await file("enc.json", { keys: [{ ...a.jwk, use: "enc" }, { ...c.jwk, alg: "PS256" }] }))).toMatch(/has no usable key/);
    expect(await startupError(await file("secret.json", { keys: [a.jwk, { kty: "oct", kid: "s", k: "c2VjcmV0" }] }))).toMatch(/key "s" is a private or secret key/);
    expect(await startupError(await file("private.json", { keys: [{ ...a.jwk, d: "AAAA" }] }))).toMatch(/key "key-a" is a private or secret key/);
    expect(await startupError(await file("short.json", { keys: [{ ...c.jwk, n: "AQAB" }] }))).toMatch(/key "key-c" is an RSA key shorter than 2048 bits/);
    expect(await startupError(await file("bad-key.json", { keys: [{ ...a.jwk, x: "AAAA" }] }))).toMatch(/key "key-a" cannot be used/);
    expect(await startupError("ftp://idp.example/jwks.json")).toMatch(/must be a JWKS file path or an https:\/\/ URL/);
    expect(await startupError("http://idp.example/jwks.json")).toMatch(/must use https:\/\//);
  });
});
