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
  /** Connected, or disconnected for less than the grace. */
  usable(): boolean;
}

export function trackConnectivity(nc: NatsConnection, logger: Logger, graceMs = NATS_CUT_AFTER_MS): Connectivity {
  // performance.now() of the disconnection in progress; undefined while connected.
  let downSince: number | undefined;
  watch(
    logger,
    "nats connectivity",
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") downSince ??= performance.now();
        else if (s.type === "reconnect") downSince = undefined;
      }
    })(),
  );
  return { usable: () => !nc.isClosed() && (downSince === undefined || performance.now() - downSince < graceMs) };
}
