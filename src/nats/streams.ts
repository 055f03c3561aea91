/** Creates the five event streams when absent and refuses ones whose config conflicts with the contract. */
import { nanos } from "@nats-io/nats-core";
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Streams } from "../../contracts/index.js";

/** JetStream's duplicate window for the event streams: at least the contract's two minutes. */
export const DUPLICATE_WINDOW_MS = 120_000;

/** The stream configuration the contract asks for. */
export function streamConfig(name: string, subjects: string): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects: [subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    num_replicas: 1,
  };
}

/** Ensures every event stream exists with a compatible configuration; throws naming what conflicts. */
export async function ensureStreams(jsm: JetStreamManager): Promise<void> {
  for (const s of Object.values(Streams)) {
    const wanted = streamConfig(s.name, s.subjects);
    let existing: StreamConfig | undefined;
    try {
      existing = (await jsm.streams.info(s.name)).config;
    } catch (err) {
      if (!/stream not found/i.test(String((err as Error).message))) throw err;
    }
    if (!existing) {
      await jsm.streams.add(wanted);
      continue;
    }
    const problems: string[] = [];
    if (existing.subjects.length !== 1 || existing.subjects[0] !== s.subjects) problems.push(`subjects ${JSON.stringify(existing.subjects)} ≠ ["${s.subjects}"]`);
    if (existing.storage !== StorageType.File) problems.push(`storage ${existing.storage} ≠ file`);
    if (existing.retention !== RetentionPolicy.Limits) problems.push(`retention ${existing.retention} ≠ limits`);
    if (existing.duplicate_window < nanos(DUPLICATE_WINDOW_MS)) problems.push(`duplicate_window shorter than ${DUPLICATE_WINDOW_MS / 1000}s`);
    if (problems.length > 0) throw new Error(`stream ${s.name} conflicts with the contract: ${problems.join("; ")}`);
  }
}
