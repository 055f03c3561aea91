/** Provisions the durables of external subscribers (NERVE_EXTERNAL_CONSUMERS, CONTRACT.md §2); Nerve never reads them. */
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager } from "@nats-io/jetstream";
import type { ExternalConsumer } from "../config/index.js";
import type { Logger } from "../log/index.js";
import { retryTransient } from "./transient-errors.js";

// JetStream's API error code of a consumer that does not exist.
const CONSUMER_NOT_FOUND = 10014;

/** An external durable exists with a configuration other than the one configured: the operator's call. */
export class ExternalConsumerConflictError extends Error {
  override readonly name = "ExternalConsumerConflictError";
}

/** Why an existing durable does not serve as `c`, if it does not. */
function conflictOf(existing: ConsumerConfig, c: ExternalConsumer): string | undefined {
  const problems: string[] = [];
  if (existing.filter_subject !== c.filter) problems.push(`filters ${existing.filter_subject ?? "everything"}, configured ${c.filter}`);
  if (existing.deliver_subject) problems.push(`is a push consumer (deliver_subject ${existing.deliver_subject}), external readers pull`);
  if (existing.ack_policy !== AckPolicy.Explicit) problems.push(`acks ${existing.ack_policy}, not explicit`);
  return problems.length > 0 ? problems.join("; ") : undefined;
}

/**
 * Creates every configured external durable that is absent: a pull consumer with explicit acks, from
 * the stream's first event. An existing one with the same filter is left as it is (its readers'
 * position and any tuning are theirs); one that conflicts stops the start, naming the fix — Nerve never
 * deletes or changes an external durable, whose position would be lost with it.
 */
export async function ensureExternalConsumers(jsm: JetStreamManager, consumers: readonly ExternalConsumer[], logger?: Logger): Promise<void> {
  for (const c of consumers) {
    await retryTransient(`external consumer ${c.name} on ${c.stream}`, () => ensureOne(jsm, c, logger), { logger });
  }
}

async function ensureOne(jsm: JetStreamManager, c: ExternalConsumer, logger?: Logger): Promise<void> {
  const existing = await jsm.consumers.info(c.stream, c.name).catch((err: unknown) => {
    if ((err as { code?: number })?.code === CONSUMER_NOT_FOUND || /consumer not found/i.test(String((err as Error)?.message))) return undefined;
    throw err;
  });
  if (existing) {
    const conflict = conflictOf(existing.config, c);
    if (conflict) {
      throw new ExternalConsumerConflictError(
        `external consumer ${c.name} on ${c.stream} ${conflict} (NERVE_EXTERNAL_CONSUMERS). Nerve never changes or deletes an external durable: ` +
          `fix NERVE_EXTERNAL_CONSUMERS, or remove the durable (\`nats consumer rm ${c.stream} ${c.name}\`, its readers' position is lost) and start again to have it made anew`,
      );
    }
    return;
  }
  await jsm.consumers.add(c.stream, { durable_name: c.name, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: c.filter });
  logger?.info({ consumer: c.name, stream: c.stream, filter: c.filter }, "external consumer created");
}
