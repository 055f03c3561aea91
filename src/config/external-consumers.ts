/** `NERVE_EXTERNAL_CONSUMERS`: the durables Nerve provisions for external subscribers (CONTRACT.md §2, §7). */
import { CONTEXTS, Consumers, Contexts, type Context } from "../../contracts/index.js";

/** One external subscriber's durable: its name, the stream it lives on and its filter subject. */
export interface ExternalConsumer {
  readonly name: string;
  readonly stream: string;
  readonly filter: string;
}

/** What the repository's development setup (nats.conf's `analytics` user) names: `bi` on all five streams. */
export const DEV_EXTERNAL_CONSUMERS = CONTEXTS.map((c) => `bi:events.${c}.>`).join(",");

// A durable name JetStream accepts and a permission subject can name as one token.
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const NERVE_CONSUMERS: ReadonlySet<string> = new Set(Object.values(Consumers));

/** Why a pair is refused, or its consumer. */
function parsePair(pair: string): ExternalConsumer | string {
  const colon = pair.indexOf(":");
  if (colon < 0) return "must be name:filter";
  const name = pair.slice(0, colon).trim();
  const filter = pair.slice(colon + 1).trim();
  if (!NAME.test(name)) return "the name must match ^[A-Za-z0-9_-]{1,64}$";
  if (NERVE_CONSUMERS.has(name)) return `${name} is one of Nerve's own consumers (${[...NERVE_CONSUMERS].join(", ")}): an external reader there would take events away from Nerve`;
  const tokens = filter.split(".");
  const wellFormed = tokens.every((t, i) => t.length > 0 && !/\s/.test(t) && (t === "*" || t === ">" || !/[*>]/.test(t)) && (t !== ">" || i === tokens.length - 1));
  if (!wellFormed) return "the filter is not a valid subject (tokens separated by dots, * or a final >)";
  const context = tokens[1] as Context;
  if (tokens[0] !== "events" || tokens.length < 3 || !CONTEXTS.includes(context)) {
    return `the filter must lie within one stream's subjects: events.<context>.…, context one of ${CONTEXTS.join(", ")}`;
  }
  // Event subjects have four tokens (events.<context>.<type>.<id>): a filter that matches none of them
  // made a durable that silently never received anything.
  if (tokens.at(-1) === ">" ? tokens.length > 4 : tokens.length !== 4) {
    return "the filter matches no event subject: they have four tokens, events.<context>.<EventType>.<aggregate id> (use * for any, or end with > after the context or the type)";
  }
  return { name, stream: Contexts[context].stream, filter };
}

/**
 * Parses `name:filter` pairs, comma-separated. Throws naming each bad pair. A name may appear on several
 * streams (one durable per stream); on one stream it has one filter, the only kind nats-server 2.9 knows.
 */
export function parseExternalConsumers(value: string): ExternalConsumer[] {
  const out: ExternalConsumer[] = [];
  const problems: string[] = [];
  for (const pair of value.split(",").map((p) => p.trim()).filter(Boolean)) {
    const c = parsePair(pair);
    if (typeof c === "string") {
      problems.push(`"${pair}": ${c}`);
      continue;
    }
    const same = out.find((o) => o.name === c.name && o.stream === c.stream);
    if (same && same.filter !== c.filter) problems.push(`"${pair}": ${c.name} already filters ${same.filter} on ${c.stream} (one filter per durable and stream)`);
    else if (!same) out.push(c);
  }
  if (problems.length > 0) throw new Error(problems.join("; "));
  return out;
}
