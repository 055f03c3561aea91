/** Helpers of the relay tests: their server and database, reading back what a stream holds, fresh event ids, ids by partition. */
import { afterAll } from "vitest";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { tempSqlitePath, until as untilHolds, useNatsWithStreams } from "../support/index.js";
import { decodeMsgPack } from "../../contracts/index.js";
import { EventEmitter } from "node:events";
import { PARTITIONS, partitionOf, type Fence, type Ownership, type OwnershipEvents } from "../../src/cluster/index.js";

/** Every message on `subject` in stream order: `<aggregate id>@<version>` of each. */
export async function streamed(nc: NatsConnection, jsm: JetStreamManager, stream: string, subject: string): Promise<string[]> {
  const c = await jsm.consumers.add(stream, { filter_subject: subject });
  const consumer = await jetstream(nc).consumers.get(stream, c.name);
  const seen: string[] = [];
  // The consumer was made now: what it has pending is everything stored so far, so no read waits for an expiry.
  while (seen.length < c.num_pending) {
    const batch = await consumer.fetch({ max_messages: Math.min(500, c.num_pending - seen.length), expires: 2000 });
    let got = 0;
    for await (const m of batch) {
      const d = decodeMsgPack(m.data);
      const v = d.ok ? (d.value as { aggregate_id: string; aggregate_version: number }) : { aggregate_id: "?", aggregate_version: -1 };
      seen.push(`${v.aggregate_id}@${v.aggregate_version}`);
      got++;
    }
    if (got === 0) break;
  }
  await jsm.consumers.delete(stream, c.name);
  return seen;
}

/** For each aggregate, its versions in the order the stream holds them. */
export function byAggregate(seen: string[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const s of seen) {
    const [id, v] = s.split("@") as [string, string];
    out.set(id, [...(out.get(id) ?? []), Number(v)]);
  }
  return out;
}

let eventNo = 0;
/** A fresh, valid event id, unique within the process (`prefix` keeps test files apart). */
export function nextEventId(prefix = "0190a0b2"): string {
  eventNo++;
  return `${prefix}-0000-7000-8000-${String(eventNo).padStart(12, "0")}`;
}

/** `count` aggregate ids `<stem><n>` whose partitions satisfy `where`. */
export function idsWhere(stem: string, count: number, where: (partition: number) => boolean): string[] {
  const out: string[] = [];
  for (let n = 0; out.length < count; n++) if (where(partitionOf(`${stem}${n}`))) out.push(`${stem}${n}`);
  return out;
}

/** 1..n. */
export const versions = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

/** Polls `check` every 20 ms until it holds, or fails naming `what` after `ms` (test/support's `until`). */
export function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  return untilHolds(what, check, ms, 20);
}

/** What a relay test file runs against: a private nats-server and a temporary SQLite database. */
export interface RelayHarness {
  nc: NatsConnection;
  jsm: JetStreamManager;
  db: Database;
}

/**
 * Starts, for the whole file, a nats-server with EVENTS_USERS — its duplicate window far shorter than
 * the contract's, so a repeated publish shows as a second message — and a SQLite database; hands them
 * to `set`, and stops them after the file's tests.
 */
export function useRelayHarness(set: (h: RelayHarness) => void): void {
  let h: RelayHarness | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  useNatsWithStreams(
    async ({ nc, jsm }) => {
      const tmp = await tempSqlitePath();
      cleanup = tmp.cleanup;
      h = { nc, jsm, db: await openDatabase({ url: `sqlite:${tmp.path}` }) };
      set(h);
    },
    (jsm) => jsm.streams.add({ name: "EVENTS_USERS", subjects: ["events.users.>"], duplicate_window: nanos(100) }),
  );
  // Before useNatsWithStreams' own afterAll (hooks after the tests run last registered first): the connection and server stop after.
  afterAll(async () => {
    await h?.db.close();
    await cleanup?.();
  });
}

/** An ownership the test moves by hand: `pause` takes a fence away without an event, `lose`/`acquire` emit. */
export class ManualOwnership extends EventEmitter<OwnershipEvents> implements Ownership {
  readonly instanceId = "manual";
  readonly fenced = true;
  readonly #held = new Set(Array.from({ length: PARTITIONS }, (_, p) => p));
  readonly #paused = new Set<number>();
  #epoch = 1;

  fence(p: number): Fence | undefined {
    return this.#held.has(p) && !this.#paused.has(p) ? { partition: p, epoch: this.#epoch } : undefined;
  }
  held(): number[] {
    return [...this.#held].filter((p) => !this.#paused.has(p)).sort((a, b) => a - b);
  }
  pause(p: number, paused: boolean): void {
    if (paused) this.#paused.add(p);
    else this.#paused.delete(p);
  }
  lose(p: number): void {
    this.#held.delete(p);
    this.emit("lost", p);
  }
  acquire(p: number): void {
    this.#held.add(p);
    this.emit("acquired", p, ++this.#epoch);
  }
}
