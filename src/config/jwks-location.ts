/** Where `NERVE_JWT_JWKS` points: a local file, or an identity provider's key set served over HTTPS. */

/** A parsed `NERVE_JWT_JWKS`. */
export type JwksLocation = { kind: "file"; path: string } | { kind: "url"; url: URL };

// Loopback only: a JWKS fetched in clear text from anywhere else could be swapped on the way, and
// with it every key a token is checked against.
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** Parses a JWKS location; throws a message fit for a start-up error when it is not usable. */
export function jwksLocation(value: string): JwksLocation {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (!value.trim()) throw new Error("must be a JWKS file path or an https:// URL");
    return { kind: "file", path: value };
  }
  if (scheme !== "https" && scheme !== "http") throw new Error(`must be a JWKS file path or an https:// URL, not ${scheme}://`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`is not a valid URL: ${value}`);
  }
  if (scheme === "http" && !LOOPBACK.test(url.hostname)) throw new Error("must use https:// (plain http:// is accepted only on a loopback address)");
  return { kind: "url", url };
}
