import { describe, expect, it } from "vitest";
import { CAUSES, CLIENT, legsOf, type Phase, type WireEvent } from "../../bench/lone-legs.js";

// A phase of commands 10 ms apart (µs on one clock); each command's wire events as offsets from its send.
function phase(commands: { ms: number; run: number; wait: number; events: [number, string, "W" | "R", string][] }[], gcs: { start: number; end: number }[] = []): Phase {
  const n = commands.length;
  const p: Phase = { send: new Float64Array(n), recv: new Float64Array(n), run: new Float64Array(n), wait: new Float64Array(n), failed: 0, wire: [], gcs };
  commands.forEach((c, i) => {
    const t0 = 100_000 + i * 20_000;
    p.send[i] = t0;
    p.recv[i] = t0 + c.ms * 1000;
    p.run[i] = c.run;
    p.wait[i] = c.wait;
    for (const [at, conn, dir, kinds] of c.events) p.wire.push({ t: t0 + at, conn, dir, kinds: kinds.split("+") } satisfies WireEvent);
  });
  return p;
}

// One command's usual wire: the client sends, the service reads it, writes its reply, the client reads that.
const usual = (readCmd: number, wroteReply: number, clientRead: number): [number, string, "W" | "R", string][] => [
  [5, CLIENT, "W", "cmd"],
  [readCmd, "nerve", "R", "inbox+event+cmd"],
  [readCmd + 50, "nerve", "W", "ack"],
  [wroteReply, "nerve", "W", "inbox+event"],
  [clientRead, CLIENT, "R", "inbox"],
];

describe("bench:lone-trace's legs and causes", () => {
  it("splits a command into its legs from the wire log: to the service, in it, back", () => {
    const [l] = legsOf(phase([{ ms: 1, run: 800, wait: 0, events: usual(200, 800, 990) }]), "nerve");
    expect(l).toMatchObject({ ms: 1, toService: 200, inService: 600, back: 200, gcMs: 0 });
    // Under 5 ms: no cause.
    expect(l!.cause).toBeUndefined();
  });

  it("puts each slow command down to one cause, in the order of the rules", () => {
    const p = phase(
      [
        // A collection of 3 ms inside it.
        { ms: 8, run: 4000, wait: 0, events: usual(200, 7000, 7900) },
        // Waiting 3 ms for a core.
        { ms: 6, run: 1000, wait: 3000, events: usual(200, 5000, 5900) },
        // Its thread neither running nor waiting to run for most of the service's leg: blocked.
        { ms: 7, run: 1000, wait: 100, events: usual(200, 6800, 6950) },
        // On a core for the service's long leg.
        { ms: 7, run: 6500, wait: 100, events: usual(200, 6800, 6950) },
        // The request late to the service.
        { ms: 6, run: 900, wait: 0, events: usual(5000, 5600, 5900) },
        // The reply late to the client.
        { ms: 6, run: 900, wait: 0, events: usual(200, 700, 5950) },
        // No reply written in the log.
        { ms: 6, run: 900, wait: 0, events: [[5, CLIENT, "W", "cmd"]] },
      ],
      [{ start: 100_000 + 1000, end: 100_000 + 4000 }],
    );
    expect(legsOf(p, "nerve").map((l) => l.cause)).toEqual([CAUSES[0], CAUSES[1], CAUSES[2], CAUSES[3], CAUSES[4], CAUSES[5], CAUSES[6]]);
  });

  it("counts only the part of a collection inside the command", () => {
    const [l] = legsOf(phase([{ ms: 6, run: 5000, wait: 0, events: usual(200, 5000, 5900) }], [{ start: 100_000 - 5000, end: 100_000 + 1500 }]), "nerve");
    expect(l!.gcMs).toBeCloseTo(1.5);
    // 1.5 ms of collection is under the rule's 2: the longest leg decides (the service's, on a core).
    expect(l!.cause).toBe(CAUSES[3]);
  });
});
