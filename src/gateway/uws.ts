/**
 * Loads uWebSockets.js and refuses its fallback. When the native binary cannot be loaded (another
 * Node ABI, `UWS_USE_FALLBACK`), the package quietly returns a `ws`-based shim whose pub/sub and
 * backpressure do nothing; a gateway on it would look healthy and deliver wrongly, so it must not start.
 */
import { createRequire } from "node:module";
import type * as UWS from "uWebSockets.js";

export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from "uWebSockets.js";
/** The uWebSockets.js module. */
export type Uws = typeof UWS;

/** The native module could not be loaded. */
export class UwsUnavailableError extends Error {
  override readonly name = "UwsUnavailableError";
}

let loaded: Uws | undefined;

/** The native uWebSockets.js module; throws UwsUnavailableError when only the fallback loads. */
export function loadUws(): Uws {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let mod: Uws;
  try {
    mod = require("uWebSockets.js") as Uws;
  } catch (cause) {
    throw new UwsUnavailableError(`uWebSockets.js failed to load: ${(cause as Error).message}`, { cause });
  }
  const why = notNative(mod);
  if (why) {
    throw new UwsUnavailableError(
      `uWebSockets.js loaded its JavaScript fallback, not the native binary (${why}); ` +
        `the gateway needs the native build for Node ABI ${process.versions.modules} on ${process.platform}-${process.arch} ` +
        `and UWS_USE_FALLBACK unset`,
    );
  }
  return (loaded = mod);
}

// The native addon's functions are native code and it exports helpers the shim lacks.
function notNative(mod: Uws): string | undefined {
  if (typeof mod.App !== "function") return "no App export";
  if (!/\[native code\]/.test(Function.prototype.toString.call(mod.App))) return "App is not native code";
  if (typeof (mod as { getParts?: unknown }).getParts !== "function") return "no getParts export";
  if (typeof mod.us_socket_local_port !== "function") return "no us_socket_local_port export";
  return undefined;
}

/**
 * Self-test of an app with its WebSocket routes registered (native pub/sub needs one first): the
 * shim's publish and numSubscribers throw "Not implemented"; the native ones answer.
 */
export function assertNativeApp(app: UWS.TemplatedApp): void {
  try {
    if (app.numSubscribers("nerve-self-test") !== 0 || app.publish("nerve-self-test", "x") !== false) throw new Error("unexpected answer");
  } catch (cause) {
    throw new UwsUnavailableError(`uWebSockets.js publish/subscribe self-test failed: ${(cause as Error).message}`, { cause });
  }
}
