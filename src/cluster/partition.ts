/**
 * Which of the 64 partitions an aggregate belongs to, and the partitioned command subjects
 * (CONTRACT.md §8). The function must equal nats-server's `{{partition(64,3)}}` subject mapping
 * bit for bit: with the mapping in the account, the server routes `cmd.<ctx>.<Command>.<id>` to
 * `pcmd.<partition>.…` by it, and an instance that computed a different partition for the same id
 * would decide commands it does not own. nats-server (server/accounts.go at v2.9.10,
 * server/subject_transform.go later) hashes the selected tokens' bytes, concatenated without a
 * separator, with Go's `hash/fnv` New32a and takes `Sum32() % n`; with the single token 3 that is
 * FNV-1a 32 of the aggregate id's UTF-8 bytes, modulo 64.
 */
import { NerveError } from "../../contracts/index.js";

/** Fixed for the life of a deployment: changing it moves aggregates between owners (and needs the server mapping changed with it). */
export const PARTITIONS = 64;

/** First token of a partitioned command subject; the server mapping writes it, Nerve's owners subscribe under it. */
export const PARTITION_SUBJECT_PREFIX = "pcmd";

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a 32-bit of the UTF-8 bytes of `text`, as an unsigned integer. It encodes inline instead of
 * through TextEncoder so the hot path (every command) allocates nothing; like TextEncoder (and so
 * like the bytes a NATS client puts on the wire) a lone surrogate counts as U+FFFD.
 */
export function fnv1a32(text: string): number {
  let h = FNV_OFFSET_BASIS;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (cp >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((cp >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((cp >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (cp & 0x3f)), FNV_PRIME);
        continue;
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}

/** The partition that owns `aggregateId`: the same number nats-server's `{{partition(64,3)}}` writes into the mapped subject. */
export function partitionOf(aggregateId: string): number {
  return fnv1a32(aggregateId) % PARTITIONS;
}

/** The parts of a partitioned command subject. */
export interface PartitionSubject {
  readonly partition: number;
  readonly context: string;
  readonly commandType: string;
  readonly aggregateId: string;
}

// One NATS subject token that is safe to splice into a subject: no separators, wildcards or spaces.
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;
// A partition number as Go's strconv.Itoa writes it: decimal, no sign, no leading zeros.
const PARTITION_TOKEN = /^(0|[1-9][0-9]?)$/;

/**
 * `pcmd.<partition>.<context>.<CommandType>.<aggregateId>`: what the server mapping produces, built
 * by hand when an instance forwards a command to its partition's owner (clusters without the
 * mapping). Throws rather than build a subject that names another partition than the id's, or
 * has another number of tokens, since its receiver would drop it.
 */
export function partitionSubject(partition: number, context: string, commandType: string, aggregateId: string): string {
  if (!Number.isInteger(partition) || partition < 0 || partition >= PARTITIONS) {
    throw new NerveError("internal", `partition must be an integer in [0, ${PARTITIONS})`, { details: { partition } });
  }
  for (const [what, token] of [["context", context], ["command_type", commandType], ["aggregate_id", aggregateId]] as const) {
    if (!TOKEN.test(token)) {
      throw new NerveError("invalid_request", `${what} must match ^[A-Za-z0-9_-]{1,64}$`, { details: { [what]: String(token).slice(0, 80) } });
    }
  }
  if (partition !== partitionOf(aggregateId)) {
    throw new NerveError("internal", `aggregate ${aggregateId} is in partition ${partitionOf(aggregateId)}, not ${partition}`);
  }
  return `${PARTITION_SUBJECT_PREFIX}.${partition}.${context}.${commandType}.${aggregateId}`;
}

/**
 * Splits a partitioned command subject, or returns undefined when it is not one of ours. The
 * partition token must be written as the server writes it (decimal, no leading zeros) and must be
 * the id's partition: clients may publish to `pcmd.>` directly (permissions are checked on the
 * mapped subject, so they hold it), and a subject naming another partition would let the wrong
 * owner decide that aggregate.
 */
export function parsePartitionSubject(subject: string): PartitionSubject | undefined {
  const parts = subject.split(".");
  if (parts.length !== 5 || parts[0] !== PARTITION_SUBJECT_PREFIX) return undefined;
  const [, p, context, commandType, aggregateId] = parts as [string, string, string, string, string];
  if (!PARTITION_TOKEN.test(p) || !context || !commandType || !aggregateId) return undefined;
  const partition = Number(p);
  if (partition !== partitionOf(aggregateId)) return undefined;
  return { partition, context, commandType, aggregateId };
}
