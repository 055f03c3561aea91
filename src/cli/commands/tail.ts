/** `tail [filter]`: live events through ordered consumers (ephemeral, never one of Nerve's durables). */
import { DeliverPolicy, jetstream, type ConsumerMessages } from "@nats-io/jetstream";
import { CONTEXTS, Contexts, type Context } from "../../../contracts/index.js";
import { CliError, ExitCodes, unknownName, usageError } from "../cli-error.js";
import type { CliCommand } from "../command.js";
import { decodeEvent, eventLine } from "../event-line.js";

/** One ordered consumer of a tail: a stream and the filter within it. */
export interface TailTarget {
  stream: string;
  filter: string;
}

/**
 * Where a tail reads: nothing or `events.>` is every stream; a context name is its stream; a subject
 * within `events.>` is read on the streams it can match, narrowed to each one's context.
 */
export function tailTargets(filter: string | undefined): TailTarget[] {
  const f = filter ?? "events.>";
  if ((CONTEXTS as readonly string[]).includes(f)) return [{ stream: Contexts[f as Context].stream, filter: `events.${f}.>` }];
  const tokens = f.split(".");
  const valid = tokens.every((t, i) => t !== "" && !/\s/.test(t) && (t !== ">" || i === tokens.length - 1) && (t.length === 1 || !/[*>]/.test(t)));
  // Event subjects have four tokens (events.<context>.<EventType>.<aggregate_id>): a shorter filter that
  // does not end in `>`, or a longer one, matches nothing (it printed "tailing …" and then nothing for ever).
  const fits = tokens.at(-1) === ">" ? tokens.length <= 4 : tokens.length === 4;
  if (tokens[0] !== "events" || tokens.length < 2 || !valid || !fits) {
    throw usageError(`a filter is a context (${CONTEXTS.join(", ")}) or a subject within events.<context>.<EventType>.<aggregate_id>, like events.orders.> or events.*.OrderPaid.*; not ${JSON.stringify(f)}`, "tail");
  }
  const [, context, ...rest] = tokens as [string, string, ...string[]];
  const suffix = context === ">" ? ">" : rest.join(".");
  const contexts = context === "*" || context === ">" ? CONTEXTS : [context];
  for (const c of contexts) if (!(CONTEXTS as readonly string[]).includes(c)) throw unknownName("context", c, CONTEXTS, "tail");
  return contexts.map((c) => ({ stream: Contexts[c as Context].stream, filter: suffix ? `events.${c}.${suffix}` : `events.${c}` }));
}

/** `tail [filter]`. */
export const tail: CliCommand = {
  name: "tail",
  args: "[filter]",
  arity: { min: 0, max: 1 },
  summary: "live events, MessagePack decoded, one line each (or JSON), until Ctrl-C",
  help: `filter: a context (${CONTEXTS.join(", ")}) or a subject within events.> such as events.orders.>,
events.*.OrderPaid.> or events.access.*.acc_123; none: every event.
Each line: occurred_on, subject, event type, aggregate type and id, v<aggregate_version>, the payload
(shortened). Older event versions are upcast as Nerve's consumers see them.
Reads through ordered consumers (ephemeral, no acks): never one of Nerve's durables, so it takes
nothing away from them. Ctrl-C ends it.

examples: npm run nerve -- tail orders
          npm run nerve -- tail 'events.*.CourseCompleted.>' --json | jq .payload`,
  options: {
    json: { type: "boolean", description: "one JSON object per line: subject, stream, seq and the event (or error)" },
    all: { type: "boolean", description: "from the start of the streams, then live (default: new events only)" },
  },
  endsOnInterrupt: true,
  check: ([filter]) => void tailTargets(filter),
  async run({ nc, print, warn, interrupted }, [filter], values) {
    const targets = tailTargets(filter);
    const js = jetstream(nc);
    const deliver = values.all ? DeliverPolicy.All : DeliverPolicy.New;
    const feeds: ConsumerMessages[] = [];
    try {
      for (const t of targets) {
        // The consumer exists once get() resolves: from then on no event is missed.
        const c = await js.consumers.get(t.stream, { filter_subjects: t.filter, deliver_policy: deliver });
        feeds.push(await c.consume({ max_messages: 256 }));
      }
      warn(`tailing ${targets.map((t) => t.filter).join(", ")} (Ctrl-C to stop)`);
      const loops = feeds.map(async (feed) => {
        for await (const m of feed) {
          const d = decodeEvent(m.data);
          if (values.json) print(JSON.stringify(d.ok ? { subject: m.subject, stream: m.info.stream, seq: m.seq, event: d.event } : { subject: m.subject, stream: m.info.stream, seq: m.seq, error: d.error }));
          else print(d.ok ? eventLine(d.event, m.subject) : `${new Date(m.info.timestampNanos / 1e6).toISOString()}  ${m.subject}  undecodable: ${d.error}`);
        }
      });
      const how = await Promise.race([interrupted.then(() => "interrupted"), ...loops.map((l) => l.then(() => "ended"))]);
      if (how === "ended") throw new CliError("the event feed ended: the connection to NATS was lost or closed");
      return ExitCodes.Ok;
    } finally {
      for (const f of feeds) await f.close().catch(() => undefined);
    }
  },
};
