/** Where the benches write their results: `bench/results/`, one dated file per run and the latest of each bench. */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");
const ROOT = join(RESULTS_DIR, "..", "..");

/** The code a run measured: the checkout's commit, and whether its code (src, actors, contracts, bench) differed from that commit. */
export interface SourceState {
  commit: string;
  uncommitted: boolean;
}

/** The checkout's state now (`unknown` outside a git checkout). */
export function sourceState(root = ROOT): SourceState {
  const git = (args: string[]) => execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  try {
    const commit = git(["rev-parse", "HEAD"]);
    const changed = git(["status", "--porcelain", "--untracked-files=no", "--", "src", "actors", "contracts", "bench", ":!bench/results"]);
    return { commit, uncommitted: changed.length > 0 };
  } catch {
    return { commit: "unknown", uncommitted: false };
  }
}

/** Read once, as the bench starts (it imports this module): a commit landing during a long run changes nothing it runs. */
const SOURCE = sourceState();

/**
 * Writes a run's results as `<startedAt>-<suffix>.json` (its start time, `:` as `-`, without milliseconds;
 * numbers to three decimals), with the code it ran (`source`: the commit at the bench's start), and, with
 * `latest`, as `latest-<suffix>.json` too. Answers the dated file's path as the run's last line names it
 * (`bench/results/…`).
 */
export async function writeResultsFile(results: { startedAt: string }, suffix: string, latest: boolean): Promise<string> {
  const stamp = results.startedAt.replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const json = `${JSON.stringify({ ...results, source: SOURCE }, (_k, v) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2)}\n`;
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(join(RESULTS_DIR, `${stamp}-${suffix}.json`), json);
  if (latest) await writeFile(join(RESULTS_DIR, `latest-${suffix}.json`), json);
  return `bench/results/${stamp}-${suffix}.json`;
}
