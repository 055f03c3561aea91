/**
 * Whether a NATS connection can be relied on now: connected, or disconnected for less than a grace —
 * a reconnect to the same or another server of the cluster takes a few hundred milliseconds, and an
 * instance must not give up its partitions for that. What the lease managers ask before each round
 * (Leases' `eligible`): an instance cut off from NATS longer sits out, and its leases go to the others.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../log/index.js";
import { watch } from "../supervision/index.js";

/** How long a disconnection may last before the connection counts as cut (ms). */
export const NATS_CUT_AFTER_MS = 5000;

/** A connection's reachability, by its status events. */
export interface Connectivity {
  /** Not between a disconnect and its reconnect (what /readyz reports). */
  connected(): boolean;
  /** Connected, or disconnected for less than the grace. */
  usable(): boolean;
  /** Stops watching (for a connection that outlives the watcher; closing the connection stops it too). */
  stop(): void;
}

export function trackConnectivity(nc: NatsConnection, logger: Logger, graceMs = NATS_CUT_AFTER_MS): Connectivity {
  // performance.now() of the disconnection in progress; undefined while connected.
  let downSince: number | undefined;
  const status = nc.status();
  watch(
    logger,
    "nats connectivity",
    (async () => {
      for await (const s of status) {
        if (s.type === "disconnect") downSince ??= performance.now();
        else if (s.type === "reconnect") downSince = undefined;
      }
    })(),
  );
  return {
    connected: () => downSince === undefined,
    usable: () => !nc.isClosed() && (downSince === undefined || performance.now() - downSince < graceMs),
    // Typed as an AsyncIterable, implemented as a stoppable queue.
    stop: () => (status as { stop?: () => void }).stop?.(),
  };
}
