/**
 * WebSocket authentication: JWTs whose `sub` is the user id and whose `exp` is required, HS256 with
 * the shared secret and RS256, ES256 or EdDSA against an identity provider's JWKS (jwks.ts).
 *
 * The algorithm decides the key, never the other way round: HS256 only ever uses the secret (so a
 * token "signed" with a public key as its HMAC secret fails), the asymmetric ones only the JWKS, and
 * an algorithm whose key is not configured (or `none`) is refused before any key is looked at.
 */
import { SignJWT, jwtVerify, type FlattenedJWSInput, type JWSHeaderParameters } from "jose";
import { ID_PATTERN } from "../../contracts/index.js";
import { JWKS_ALGORITHMS, JwksUnavailableError, type KeySource } from "./jwks.js";

/** A verified token: whose it is and when it stops being valid (seconds since the epoch). */
export interface Identity {
  userId: string;
  exp: number;
}

/** Why a token was refused; the message is safe to show the client. */
export class AuthError extends Error {
  override readonly name = "AuthError";
}

/** What tokens are checked against; at least one of `secret` and `jwks`. */
export interface TokenVerifierOptions {
  /** HS256 secret (at least 16 characters); without it HS256 tokens are refused. */
  secret?: string;
  /** An identity provider's public keys ({@link openJwks}); without them RS256/ES256/EdDSA tokens are refused. */
  jwks?: KeySource;
  /** When set, tokens must carry this `iss`. */
  issuer?: string;
  /** When set, tokens must carry this `aud`. */
  audience?: string;
  /**
   * Clock skew allowed on `nbf` (seconds, default 5). None on `exp`: a socket is closed at its token's
   * `exp` (hub.ts), so a token already past it is refused rather than let in to be closed at once.
   */
  clockToleranceS?: number;
}

/** A compact JWS (RFC 7515 §7.1): three base64url parts, the payload's possibly empty. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/;

/** Verifies tokens and, in development, signs them. */
export class TokenVerifier {
  readonly #key: Uint8Array | undefined;
  readonly #jwks: KeySource | undefined;
  readonly #options: Parameters<typeof jwtVerify>[2];

  /** A secret alone (HS256 only), or the full options. */
  constructor(options: string | TokenVerifierOptions) {
    const o = typeof options === "string" ? { secret: options } : options;
    if (o.secret !== undefined && o.secret.length < 16) throw new Error("the JWT secret must be at least 16 characters");
    if (o.secret === undefined && !o.jwks) throw new Error("tokens need a JWT secret or a JWKS to be checked against");
    this.#key = o.secret === undefined ? undefined : new TextEncoder().encode(o.secret);
    this.#jwks = o.jwks;
    this.#options = {
      algorithms: [...(this.#key ? ["HS256"] : []), ...(this.#jwks ? JWKS_ALGORITHMS : [])],
      requiredClaims: ["sub", "exp"],
      clockTolerance: o.clockToleranceS ?? 5,
      ...(o.issuer ? { issuer: o.issuer } : {}),
      ...(o.audience ? { audience: o.audience } : {}),
    };
  }

  /** Verifies a token; throws AuthError when it is missing, malformed, badly signed, expired or its keys are unavailable. */
  async verify(token: string | undefined): Promise<Identity> {
    if (!token) throw new AuthError("missing token");
    // A compact JWS is three base64url parts and nothing else: jose (Node's base64 decoding) reads past
    // white space in the signature, so `<token>  ` verified as the token itself.
    if (!COMPACT_JWS.test(token)) throw new AuthError("invalid token");
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#keyFor, this.#options));
    } catch (err) {
      throw new AuthError(refusal(err));
    }
    if (typeof payload.sub !== "string" || !ID_PATTERN.test(payload.sub)) throw new AuthError("invalid token subject");
    if (typeof payload.exp !== "number") throw new AuthError("invalid token expiry");
    // jose allowed the skew on exp too: the expiry wheel does not (CONTRACT.md §6: expired is 401).
    if (payload.exp * 1000 <= Date.now()) throw new AuthError("token expired");
    return { userId: payload.sub, exp: payload.exp };
  }

  /** Signs an HS256 token for `userId` valid for `ttlSeconds` (development helper and tests); needs the secret. */
  sign(userId: string, ttlSeconds: number): Promise<string> {
    if (!this.#key) return Promise.reject(new Error("no JWT secret is configured to sign development tokens"));
    return signToken(this.#key, userId, Math.floor(Date.now() / 1000) + ttlSeconds);
  }

  // Only reached for an allowed algorithm (jose checks the list first), so the key is configured.
  readonly #keyFor = (header: JWSHeaderParameters, token: FlattenedJWSInput) => (header.alg === "HS256" ? Promise.resolve(this.#key!) : this.#jwks!(header, token));
}

/** What the client is told about a refused token. */
function refusal(err: unknown): string {
  if (err instanceof JwksUnavailableError) return "token keys unavailable";
  switch ((err as { code?: string }).code) {
    case "ERR_JWT_EXPIRED":
      return "token expired";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "unknown token key";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return `invalid token claim ${(err as { claim?: string }).claim ?? ""}`.trim();
    default:
      return "invalid token";
  }
}

/** Signs an HS256 token with `sub` = userId and the given `exp` (seconds since the epoch). */
export function signToken(secret: string | Uint8Array, userId: string, exp: number): Promise<string> {
  const key = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  return new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setSubject(userId).setIssuedAt().setExpirationTime(exp).sign(key);
}

/** The token of an upgrade request: the `token` query parameter, else an `Authorization: Bearer` header. */
export function tokenOf(query: string | undefined, authorization: string | undefined): string | undefined {
  if (query) return query;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "");
  return m?.[1];
}
