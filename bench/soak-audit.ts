/** The soak's end check: every event of the five streams read once, in order, with an ordered consumer, its event_id counted. */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { Streams, decodeMsgPack } from "../contracts/index.js";
import type { EventIdTally } from "./event-id-tally.js";

/** Reads each stream up to its last sequence at the start of the read; counts every event_id in `tally`. Resolves with the messages read per stream. */
export async function tallyStreams(nc: NatsConnection, tally: EventIdTally, onProgress: (stream: string, read: number, of: number) => void): Promise<Record<string, number>> {
  const jsm = await jetstreamManager(nc);
  const read: Record<string, number> = {};
  for (const { name } of Object.values(Streams)) {
    const { last_seq: lastSeq, messages: total } = (await jsm.streams.info(name)).state;
    read[name] = 0;
    if (total === 0) continue;
    const messages = await (await jetstream(nc).consumers.get(name)).consume({ max_messages: 1000 });
    let nextReport = Date.now() + 5000;
    try {
      for await (const m of messages) {
        const d = decodeMsgPack(m.data);
        const id = d.ok ? (d.value as { event_id?: unknown }).event_id : undefined;
        if (typeof id !== "string") throw new Error(`${name} seq ${m.seq}: no event_id in the body`);
        tally.see(id);
        read[name]++;
        if (Date.now() > nextReport) {
          onProgress(name, read[name], total);
          nextReport = Date.now() + 5000;
        }
        if (m.seq >= lastSeq) break;
      }
    } finally {
      await messages.close();
    }
  }
  return read;
}
