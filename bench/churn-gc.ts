/**
 * What a churning table costs the young generation (`npm run bench:churn-gc`): a table of entries in
 * flight — each a promise with a message and a closure, as a request is — where one entry is added and
 * the oldest removed, over and over, kept in a `Map` and in a {@link ChurnTable}. Each variant runs in a
 * child process under `--trace-gc-nvp`; after a warm-up the child forces one full collection (as a busy
 * service gets now and then), and the figures are those of the scavenges after it: what survived each
 * and what was promoted, per operation, and the scavenges' pauses.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ChurnTable } from "../src/support/churn-table.js";
import { median } from "./percentiles.js";
import { table } from "./table.js";

const OPS = 600_000;
const IN_FLIGHT = 64;

interface Table {
  set(k: number, v: unknown): void;
  delete(k: number): boolean;
}

/** The child: churns `OPS` entries through one table. */
async function child(kind: string): Promise<void> {
  const t: Table = kind === "map" ? new Map<number, unknown>() : new ChurnTable<unknown>();
  const run = async (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      let resolve!: (v: unknown) => void;
      const done = new Promise((r) => (resolve = r));
      const message = { subject: `req.${i}`, data: new Uint8Array(64), headers: [["Content-Type", "application/msgpack"]] };
      void done.then(() => message.data.length);
      t.set(i, { resolve, message, at: i });
      if (i >= IN_FLIGHT) t.delete(i - IN_FLIGHT);
      resolve(undefined);
      // A turn of the event loop now and then, as a service between socket reads.
      if (i % 256 === 0) await new Promise((r) => setImmediate(r));
    }
  };
  await run(0, OPS / 4);
  console.log("MARK full-gc");
  (globalThis as { gc?: () => void }).gc?.();
  await run(OPS / 4, OPS);
}

interface Scavenge {
  pauseMs: number;
  allocated: number;
  promoted: number;
  survived: number;
}

/** Runs a child and reads the scavenges after its forced full collection. */
function measure(kind: string): { scavenges: Scavenge[]; ops: number } {
  const r = spawnSync(process.execPath, ["--expose-gc", "--trace-gc-nvp", "--max-semi-space-size=16", "--min-semi-space-size=16", "--import", "tsx", fileURLToPath(import.meta.url), kind], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`child ${kind} failed: ${r.stderr}`);
  const lines = r.stdout.split("\n");
  const mark = lines.findIndex((l) => l.startsWith("MARK"));
  const scavenges: Scavenge[] = [];
  for (const line of lines.slice(mark + 1)) {
    if (!line.includes("gc=s ")) continue;
    const kv = Object.fromEntries(line.split(" ").filter((w) => w.includes("=")).map((w) => w.split("=", 2) as [string, string]));
    scavenges.push({ pauseMs: Number(kv.pause), allocated: Number(kv.allocated), promoted: Number(kv.promoted), survived: Number(kv.new_space_survived) });
  }
  return { scavenges, ops: (OPS * 3) / 4 };
}

if (process.argv[2]) {
  await child(process.argv[2]);
} else {
  const rows = (["map", "churn-table"] as const).map((kind) => {
    const { scavenges, ops } = measure(kind);
    const sum = (f: (s: Scavenge) => number) => scavenges.reduce((a, s) => a + f(s), 0);
    return [
      kind === "map" ? "Map" : "ChurnTable",
      scavenges.length,
      Math.round(sum((s) => s.allocated) / ops),
      Math.round(sum((s) => s.survived) / ops),
      Math.round(sum((s) => s.promoted) / ops),
      `${((100 * sum((s) => s.survived)) / Math.max(1, sum((s) => s.allocated))).toFixed(1)} %`,
      median(scavenges.map((s) => s.pauseMs)).toFixed(2),
    ];
  });
  console.log(
    table(
      `A table of ${IN_FLIGHT} entries in flight, ${OPS.toLocaleString("en")} added and removed; scavenges after one full collection (16 MB semi-spaces)`,
      ["table", "scavenges", "allocated B/op", "survived B/op", "promoted B/op", "survived ÷ allocated", "scavenge pause p50 ms"],
      rows,
    ),
  );
}
