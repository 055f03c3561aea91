/** Where the benches write their results: `bench/results/`, one dated file per run and the latest of each bench. */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");

/**
 * Writes a run's results as `<startedAt>-<suffix>.json` (its start time, `:` as `-`, without milliseconds;
 * numbers to three decimals) and, with `latest`, as `latest-<suffix>.json` too. Answers the dated file's
 * path as the run's last line names it (`bench/results/…`).
 */
export async function writeResultsFile(results: { startedAt: string }, suffix: string, latest: boolean): Promise<string> {
  const stamp = results.startedAt.replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const json = `${JSON.stringify(results, (_k, v) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2)}\n`;
  await mkdir(RESULTS_DIR, { recursive: true });
  await writeFile(join(RESULTS_DIR, `${stamp}-${suffix}.json`), json);
  if (latest) await writeFile(join(RESULTS_DIR, `latest-${suffix}.json`), json);
  return `bench/results/${stamp}-${suffix}.json`;
}
