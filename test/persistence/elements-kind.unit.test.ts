import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

// V8's own view of the arrays (--allow-natives-syntax, in a process of its own): the group commit's writes and
// their encoding reach the same functions from every batch, so they must come in one elements kind, packed.
const probe = `
  const { encodeWrites } = await import("./src/persistence/commit-batch.ts");
  const { writesOf } = await import("./src/persistence/group-commit.ts");
  const write = (i) => ({ aggregateType: "User", aggregateId: "u" + i, baseVersion: i, version: i + 1, state: {}, now: "2026-12-07T00:00:00.000Z",
    events: [{ event_id: "e" + i, event_type: "UserProfileUpdated", event_version: 1, occurred_on: "2026-12-07T00:00:00.000Z", aggregate_version: i + 1, correlation_id: "c", causation_id: "c", payload: {}, subject: "events.users.UserProfileUpdated.u" + i, body: new Uint8Array(1) }] });
  const holey = (n) => { const a = new Array(n); for (let i = 0; i < n; i++) a[i] = { write: write(i) }; return a; };
  const packed = (n) => Array.from({ length: n }, (_, i) => ({ write: write(i) }));
  // Each function optimized (TurboFan: its inlined Array.prototype.map allocated the result holey, the
  // builtin packed) for the kind of batch it is then given, and interpreted.
  const out = [];
  for (const make of [holey, packed]) for (const n of [1, 5]) for (const optimize of [false, true]) {
    const batch = make(n);
    if (optimize) {
      for (const f of [writesOf, encodeWrites]) %PrepareFunctionForOptimization(f);
      for (let i = 0; i < 3; i++) encodeWrites(writesOf(make(n)));
      for (const f of [writesOf, encodeWrites]) %OptimizeFunctionOnNextCall(f);
    }
    const writes = writesOf(batch);
    const encoded = encodeWrites(writes);
    const turbofanned = optimize ? (%GetOptimizationStatus(writesOf) & 16) !== 0 && (%GetOptimizationStatus(encodeWrites) & 16) !== 0 : true;
    out.push([turbofanned, %HasHoleyElements(writes), %HasHoleyElements(encoded), encoded.some((w) => %HasHoleyElements(w.events))]);
  }
  console.log(JSON.stringify(out));
`;

describe("the group commit's arrays", () => {
  it("are packed whatever the batch it was given: one elements kind for the functions they reach", () => {
    const r = spawnSync(process.execPath, ["--allow-natives-syntax", "--import", "tsx", "--input-type=module", "-e", probe], { cwd: process.cwd(), encoding: "utf8", timeout: 60_000 });
    expect(r.stderr).toBe("");
    const seen = JSON.parse(r.stdout.trim().split("\n").pop()!) as boolean[][];
    // Each: [optimized when asked, writes holey, encoded writes holey, any write's events holey].
    expect(seen).toEqual(Array.from({ length: 8 }, () => [true, false, false, false]));
  });
});
