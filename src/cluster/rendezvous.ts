/**
 * Placement by rendezvous (highest random weight) hashing: each partition goes to the live instance
 * with the highest score for it. Every instance computes the same answer from the same membership,
 * with no coordination, and a join or a leave moves only about 1/N of the partitions.
 */
import { createHash } from "node:crypto";

/** The weight of `instance` for `key` (a well-mixed 48-bit integer). */
export function weight(instance: string, key: string): number {
  return createHash("sha256").update(`${key}\u0000${instance}`).digest().readUIntBE(0, 6);
}

/** The instance a key (a partition, a consumer) belongs on; ties (never in practice) go to the smaller name. */
export function placeOf(key: string, instances: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const i of instances) {
    const w = weight(i, key);
    if (w > bestWeight || (w === bestWeight && best !== undefined && i < best)) {
      best = i;
      bestWeight = w;
    }
  }
  return best;
}
