/**
 * The pure half of `bench:lone-trace` (bench/lone-trace.ts): a one-at-a-time phase's commands split into their
 * legs from the wire log, and each command over {@link SLOW_MS} put down to one cause (the rules are in
 * lone-trace.ts's header).
 */

/** A command slower than this (ms) is given a cause. */
export const SLOW_MS = 5;
/** The connection name of the traced client. */
export const CLIENT = "lone-trace";

/** What the wire log records: a connection wrote, or its client parsed, these subjects' kinds. */
export interface WireEvent {
  t: number;
  conn: string;
  dir: "W" | "R";
  kinds: string[];
}

/** A subject's kind, as the timelines name it. */
export const kindOf = (subject: string): string =>
  subject.startsWith("cmd.") ? "cmd" : subject.startsWith("_INBOX") ? "inbox" : subject.startsWith("$JS.ACK") ? "ack" : subject.startsWith("events.") || subject.startsWith("bench.floor.") ? "event" : subject.startsWith("$JS.API") ? "js-api" : subject.split(".", 2).join(".");

/** One phase's commands: send and reply times, the main thread's time on a core and waiting between them. */
export interface Phase {
  send: Float64Array;
  recv: Float64Array;
  run: Float64Array;
  wait: Float64Array;
  failed: number;
  wire: WireEvent[];
  gcs: { start: number; end: number }[];
}

/** A command's legs (µs; NaN where the log has no such event) and the cause of a slow one. */
export interface Legs {
  ms: number;
  toService: number;
  inService: number;
  back: number;
  gcMs: number;
  cause?: string;
  timeline: string;
}

/** The causes a slow command is put down to, in the order the rules try them ({@link legsOf}). */
export const CAUSES = [
  "a collection overlapped it (≥ 2 ms)",
  "the main thread waited ≥ 2 ms for a core",
  "in the service, its thread blocked (fsync, the write lock)",
  "in the service, on a core",
  "to the service (NATS, or the thread busy when the request came)",
  "back to the client (NATS, or the thread busy when the reply came)",
  "not placed (a leg missing from the log)",
] as const;

/**
 * Each command's legs, from the first parse of a `cmd` by the `service` connection's client after the send, and
 * the first write with a reply (`_INBOX`) by it after that. A command over {@link SLOW_MS} gets the first cause
 * that holds: collections inside it for ≥ 2 ms; the main thread ≥ 2 ms runnable but not running; a leg
 * missing; its longest leg — the service's is "blocked" when the main thread spent ≥ 2 ms of the whole
 * command neither running nor waiting to run (the whole command: schedstat is read at the send and the reply
 * only), else "on a core".
 */
export function legsOf(p: Phase, service: string): Legs[] {
  const out: Legs[] = [];
  let w = 0;
  for (let i = 0; i < p.send.length; i++) {
    const from = p.send[i]!;
    const to = p.recv[i]!;
    while (w < p.wire.length && p.wire[w]!.t < from) w++;
    let readCmd = NaN;
    let wroteReply = NaN;
    const seen: string[] = [];
    for (let j = w; j < p.wire.length && p.wire[j]!.t <= to; j++) {
      const e = p.wire[j]!;
      seen.push(`${Math.round(e.t - from)} ${e.conn === service ? "service" : e.conn === CLIENT ? "client" : e.conn} ${e.dir} ${e.kinds.join("+") || "-"}`);
      if (e.conn === service && e.dir === "R" && Number.isNaN(readCmd) && e.kinds.includes("cmd")) readCmd = e.t;
      if (e.conn === service && e.dir === "W" && !Number.isNaN(readCmd) && Number.isNaN(wroteReply) && e.kinds.includes("inbox")) wroteReply = e.t;
    }
    const ms = (to - from) / 1000;
    const gcMs = p.gcs.reduce((a, g) => a + Math.max(0, Math.min(to, g.end) - Math.max(from, g.start)), 0) / 1000;
    const legs: Legs = { ms, toService: readCmd - from, inService: wroteReply - readCmd, back: to - wroteReply, gcMs, timeline: seen.join(" | ") };
    if (ms > SLOW_MS) {
      const blocked = ms * 1000 - p.run[i]! - p.wait[i]!;
      const longest = Math.max(legs.toService, legs.inService, legs.back);
      if (gcMs >= 2) legs.cause = CAUSES[0];
      else if (p.wait[i]! >= 2000) legs.cause = CAUSES[1];
      else if (Number.isNaN(longest)) legs.cause = CAUSES[6];
      else if (longest === legs.inService) legs.cause = blocked >= 2000 ? CAUSES[2] : CAUSES[3];
      else legs.cause = longest === legs.toService ? CAUSES[4] : CAUSES[5];
      legs.timeline = `[on a core ${(p.run[i]! / 1000).toFixed(1)} ms, waiting for one ${(p.wait[i]! / 1000).toFixed(1)}${gcMs > 0 ? `, collections ${gcMs.toFixed(1)}` : ""}] ${legs.timeline}`;
    }
    out.push(legs);
  }
  return out;
}

