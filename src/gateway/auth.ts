/** WebSocket authentication: HS256 JWTs whose `sub` is the user id and whose `exp` is required. */
import { SignJWT, jwtVerify } from "jose";
import { ID_PATTERN } from "../../contracts/index.js";

/** A verified token: whose it is and when it stops being valid (seconds since the epoch). */
export interface Identity {
  userId: string;
  exp: number;
}

/** Why a token was refused; the message is safe to show the client. */
export class AuthError extends Error {
  override readonly name = "AuthError";
}

/** Verifies tokens and, in development, signs them. */
export class TokenVerifier {
  readonly #key: Uint8Array;

  constructor(secret: string) {
    if (secret.length < 16) throw new Error("the JWT secret must be at least 16 characters");
    this.#key = new TextEncoder().encode(secret);
  }

  /** Verifies a token; throws AuthError when it is missing, malformed, badly signed or expired. */
  async verify(token: string | undefined): Promise<Identity> {
    if (!token) throw new AuthError("missing token");
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#key, { algorithms: ["HS256"], requiredClaims: ["sub", "exp"] }));
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new AuthError(code === "ERR_JWT_EXPIRED" ? "token expired" : "invalid token");
    }
    if (typeof payload.sub !== "string" || !ID_PATTERN.test(payload.sub)) throw new AuthError("invalid token subject");
    if (typeof payload.exp !== "number") throw new AuthError("invalid token expiry");
    return { userId: payload.sub, exp: payload.exp };
  }

  /** Signs a token for `userId` valid for `ttlSeconds` (development helper and tests). */
  sign(userId: string, ttlSeconds: number): Promise<string> {
    return signToken(this.#key, userId, Math.floor(Date.now() / 1000) + ttlSeconds);
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
