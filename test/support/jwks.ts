/** A stand-in identity provider for token tests: key pairs made in the test and a JWKS served on 127.0.0.1. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from "jose";

/** The asymmetric algorithms the gateway accepts. */
export type SigningAlg = "RS256" | "ES256" | "EdDSA";

/** A signing key of the identity provider: the private half signs, `jwk` is what the JWKS publishes. */
export interface IdpKey {
  kid: string;
  alg: SigningAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

/** Generates a key pair for `alg`, published under `kid`. */
export async function idpKey(alg: SigningAlg, kid: string): Promise<IdpKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** Options of {@link idpToken}. */
export interface IdpTokenOptions {
  /** `sub` (default `ada`). */
  sub?: string;
  /** `exp` relative to now (s, default 3600). */
  expIn?: number;
  /** Further claims (`iss`, `aud`, `nbf`…). */
  claims?: JWTPayload;
  /** Header fields overriding `alg` and `kid` (to lie about them). */
  header?: Record<string, string>;
}

/** A token signed by `key`. */
export function idpToken(key: IdpKey, opts: IdpTokenOptions = {}): Promise<string> {
  return new SignJWT({ ...opts.claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...opts.header })
    .setSubject(opts.sub ?? "ada")
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (opts.expIn ?? 3600))
    .sign(key.privateKey);
}

/** A JWKS served over plain HTTP on 127.0.0.1 (loopback, so the gateway accepts http://), counting its fetches. */
export class JwksServer {
  /** The keys served; change it to rotate. */
  keys: JWK[];
  /** `ok` serves the keys, `down` answers 503, `hang` never answers. */
  mode: "ok" | "down" | "hang" = "ok";
  /** Requests received. */
  hits = 0;
  /** How long an `ok` answer takes (ms). */
  delayMs = 0;
  /** The JWKS URL (kept after {@link close}, to point a verifier at a closed port). */
  url = "";
  readonly #server: Server;

  private constructor(server: Server, keys: JWK[]) {
    this.#server = server;
    this.keys = keys;
  }

  /** Starts a server publishing `keys`. */
  static async start(keys: IdpKey[]): Promise<JwksServer> {
    const server = createServer();
    const jwks = new JwksServer(server, keys.map((k) => k.jwk));
    server.on("request", (_req, res) => {
      jwks.hits++;
      if (jwks.mode === "hang") return;
      if (jwks.mode === "down") return void res.writeHead(503).end();
      const answer = () => res.writeHead(200, { "Content-Type": "application/jwk-set+json" }).end(JSON.stringify({ keys: jwks.keys }));
      if (jwks.delayMs > 0) setTimeout(answer, jwks.delayMs);
      else answer();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    jwks.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    return jwks;
  }

  /** Stops the server, cutting hanging requests. */
  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
