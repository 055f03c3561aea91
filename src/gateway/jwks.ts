/**
 * An identity provider's public keys (`NERVE_JWT_JWKS`, CONTRACT.md §6, §7) for RS256, ES256 and
 * EdDSA tokens. jose picks the key by the token's `kid` and `alg` (a key's own `alg`, `kty`, `crv`
 * and `use` must fit) and refuses secret algorithms and private keys.
 *
 * - File: read and checked at start-up (a bad one stops the start); re-read when a token names an
 *   unknown `kid`, at most once per cooldown, and by the first token after {@link JwksOptions.refreshMs}
 *   without one, so a key taken out of the file (rotated out, compromised) stops verifying within that
 *   time rather than at the next restart; a re-read that fails keeps the keys read before.
 * - URL: jose's remote set (cached, refetched on an unknown `kid` at most once per cooldown, with a
 *   timeout). When a fetch fails, the failure is reported and, for a short while, tokens are checked
 *   against the last keys fetched (refused when there are none) without asking again: an identity
 *   provider that is down costs one fetch per interval, never one per connection.
 */
import { readFile } from "node:fs/promises";
import { createLocalJWKSet, createRemoteJWKSet, importJWK, type CryptoKey, type FlattenedJWSInput, type JSONWebKeySet, type JWK, type JWSHeaderParameters } from "jose";
import { jwksLocation } from "../config/index.js";
import type { Logger } from "../log/index.js";
import { reportFailure } from "../supervision/index.js";

/** Algorithms checked against a JWKS (`Ed25519` is EdDSA's fully-specified name, RFC 9864). */
export const JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA", "Ed25519"];

/** Resolves the public key a token names; what `jwtVerify` takes as its key. */
export type KeySource = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/** The key set could not be read or fetched, and no earlier keys can stand in: the token is refused. */
export class JwksUnavailableError extends Error {
  override readonly name = "JwksUnavailableError";
}

/** Options of {@link openJwks}. */
export interface JwksOptions {
  /** Where failures to read or fetch the key set are reported. */
  logger: Logger;
  /** Least time between two reloads caused by unknown `kid`s (ms, default 30 s). */
  cooldownMs?: number;
  /** Longest wait for the identity provider (ms, default 5 s). */
  timeoutMs?: number;
  /** A file's keys are read again by the first token after this long (ms, default 60 s). */
  refreshMs?: number;
}

/** Opens `NERVE_JWT_JWKS`; rejects with a message naming the variable when it is unusable. */
export async function openJwks(location: string, opts: JwksOptions): Promise<KeySource> {
  try {
    const where = jwksLocation(location);
    return where.kind === "url" ? remoteJwks(where.url, opts) : await fileJwks(where.path, opts);
  } catch (err) {
    throw new Error(`NERVE_JWT_JWKS ${(err as Error).message}`, { cause: err });
  }
}

async function fileJwks(path: string, opts: JwksOptions): Promise<KeySource> {
  const cooldownMs = opts.cooldownMs ?? 30_000;
  const refreshMs = opts.refreshMs ?? 60_000;
  let local = createLocalJWKSet(await readKeySet(path));
  // Intervals by the monotonic clock: a wall clock stepped back an hour held the next re-read that long.
  let readAt = performance.now();
  let reading: Promise<void> | undefined;
  const reread = () =>
    (reading ??= readKeySet(path)
      .then(
        (jwks) => void (local = createLocalJWKSet(jwks)),
        (err: unknown) => reportFailure(opts.logger, "jwks", err, "NERVE_JWT_JWKS could not be re-read: keeping the keys read before"),
      )
      .finally(() => {
        readAt = performance.now();
        reading = undefined;
      }));
  return async (header, token) => {
    if (performance.now() - readAt >= refreshMs) await reread();
    try {
      return await local(header, token);
    } catch (err) {
      if (!isNoMatchingKey(err) || performance.now() - readAt < cooldownMs) throw err;
      await reread();
      return local(header, token);
    }
  };
}

function remoteJwks(url: URL, opts: JwksOptions): KeySource {
  const cooldownMs = opts.cooldownMs ?? 30_000;
  const retryMs = Math.min(cooldownMs, 5_000);
  const remote = createRemoteJWKSet(url, { cooldownDuration: cooldownMs, timeoutDuration: opts.timeoutMs ?? 5_000 });
  let failedAt = -Infinity;
  let last: ReturnType<typeof createLocalJWKSet> | undefined;
  const failed = (err: unknown) => {
    // Every caller waiting on one failed fetch lands here: it is one failure.
    if (performance.now() - failedAt < retryMs) return;
    failedAt = performance.now();
    const jwks = remote.jwks();
    last = jwks ? createLocalJWKSet(jwks) : undefined;
    reportFailure(opts.logger, "jwks", err, `could not fetch the JWKS at ${url.href}`);
  };
  const fromLast: KeySource = (header, token) => {
    if (!last) return Promise.reject(new JwksUnavailableError(`the identity provider's keys are unavailable (${url.href})`));
    return last(header, token);
  };
  // Fetched now, so that the first learner does not wait for it; a failure is only reported.
  remote.reload().catch(failed);
  return async (header, token) => {
    if (performance.now() - failedAt < retryMs) return fromLast(header, token);
    try {
      return await remote(header, token);
    } catch (err) {
      if (isNoMatchingKey(err) || code(err) === "ERR_JWKS_MULTIPLE_MATCHING_KEYS") throw err;
      failed(err);
      return fromLast(header, token);
    }
  };
}

/** Reads and checks a key set file. */
async function readKeySet(path: string): Promise<JSONWebKeySet> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`cannot be read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  return checkKeySet(json, path);
}

/** Checks a key set: public keys only, and at least one that verifies RS256, ES256 or EdDSA. */
async function checkKeySet(json: unknown, where: string): Promise<JSONWebKeySet> {
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error(`${where} is not a JWK set (no "keys" array)`);
  let usable = 0;
  for (const [i, jwk] of keys.entries()) {
    const name = `${where} key ${typeof jwk?.kid === "string" ? `"${jwk.kid}"` : `#${i}`}`;
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new Error(`${name} is not a JWK`);
    if ("d" in jwk || "k" in jwk) throw new Error(`${name} is a private or secret key: a JWKS holds public keys only`);
    const alg = algorithmOf(jwk as JWK);
    if (!alg) continue;
    // jose refuses these only when a token arrives; say so at start-up instead.
    if (alg === "RS256" && Buffer.from(String((jwk as JWK).n), "base64url").length < 256) throw new Error(`${name} is an RSA key shorter than 2048 bits`);
    await importJWK(jwk as JWK, alg).catch((err: unknown) => {
      throw new Error(`${name} cannot be used: ${(err as Error).message}`);
    });
    usable++;
  }
  if (usable === 0) throw new Error(`${where} has no usable key (RSA, EC P-256 or Ed25519 public keys for signatures)`);
  return json as JSONWebKeySet;
}

/** The algorithm a JWK verifies among {@link JWKS_ALGORITHMS}, if any. */
function algorithmOf(jwk: JWK): string | undefined {
  if (jwk.use !== undefined && jwk.use !== "sig") return undefined;
  const alg = jwk.kty === "RSA" ? "RS256" : jwk.kty === "EC" && jwk.crv === "P-256" ? "ES256" : jwk.kty === "OKP" && jwk.crv === "Ed25519" ? "EdDSA" : undefined;
  if (alg === undefined || jwk.alg === undefined || jwk.alg === alg) return alg;
  return alg === "EdDSA" && jwk.alg === "Ed25519" ? "Ed25519" : undefined;
}

const code = (err: unknown) => (err as { code?: unknown } | null)?.code;
const isNoMatchingKey = (err: unknown) => code(err) === "ERR_JWKS_NO_MATCHING_KEY";
