/**
 * How many cases a property runs, and how a failing one is replayed (issue #10). Every property file
 * (`*.props.<tier>.test.ts`) takes its fast-check parameters from {@link fuzzParams}:
 *
 * - `npm test`: each property runs the count it asks for, `runs(ciRuns)` = `ciRuns`, with a fresh seed.
 * - `npm run fuzz` (`FUZZ_RUNS=20000`): a property runs its share of `FUZZ_RUNS` (never fewer than
 *   `ciRuns`). The share defaults to `ciRuns / STANDARD_RUNS`, so `runs(200)` runs exactly `FUZZ_RUNS`
 *   and `runs(50)` a quarter of it; a costly property, or one of many alike (one per command type),
 *   names a smaller share: `runs(60, 0.05)` runs 1,000 cases at `FUZZ_RUNS=20000`. One number scales
 *   every file while each property keeps its relative cost.
 * - `FUZZ_SEED=<seed> FUZZ_PATH=<path>` replays a failure (the failure message prints the command).
 * - `FUZZ_VERBOSE=1` lists every failing value met while shrinking, `2` every generated value.
 */
import fc from "fast-check";
import { afterAll, expect, vi } from "vitest";

/** The CI run count that `FUZZ_RUNS` stands for: `runs(STANDARD_RUNS)` runs exactly `FUZZ_RUNS` cases. */
export const STANDARD_RUNS = 200;

function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

const fuzzRuns = envInt("FUZZ_RUNS");
const fuzzSeed = envInt("FUZZ_SEED");
const fuzzPath = process.env.FUZZ_PATH?.trim() || undefined;
const fuzzVerbose = envInt("FUZZ_VERBOSE") ?? 0;

/** Whether this is a fuzz run (`FUZZ_RUNS` set) rather than the ordinary test run. */
export const fuzzing = fuzzRuns !== undefined && fuzzRuns > 0;

/** The number of cases a property runs: `ciRuns` normally; when fuzzing, `fuzzShare × FUZZ_RUNS` (at least `ciRuns`). */
export function runs(ciRuns: number, fuzzShare = ciRuns / STANDARD_RUNS): number {
  if (!fuzzing) return ciRuns;
  return Math.max(ciRuns, Math.round(fuzzShare * fuzzRuns!));
}

/** Cases run so far by the properties of this test file (each file has its own module instance). */
export const fuzzCount = { cases: 0, properties: 0 };

/** fast-check parameters of one property: its run count, the replay seed and path, and a failure report that says how to replay. */
export function fuzzParams<T>(ciRuns: number, fuzzShare?: number): fc.Parameters<T> {
  return {
    numRuns: runs(ciRuns, fuzzShare),
    verbose: fuzzVerbose,
    includeErrorInReport: true,
    ...(fuzzSeed === undefined ? {} : { seed: fuzzSeed }),
    ...(fuzzSeed === undefined || fuzzPath === undefined ? {} : { path: fuzzPath }),
    plugins: [replayReport<T>],
  };
}

/** Runs a synchronous property with {@link fuzzParams}; throws the replayable report on failure. */
export function assertProperty<T>(property: fc.IProperty<T>, ciRuns: number, fuzzShare?: number): void {
  fc.assert(property, fuzzParams<T>(ciRuns, fuzzShare));
}

/** Runs an asynchronous property with {@link fuzzParams}; rejects with the replayable report on failure. */
export function assertAsyncProperty<T>(property: fc.IAsyncProperty<T>, ciRuns: number, fuzzShare?: number): Promise<void> {
  return fc.assert(property, fuzzParams<T>(ciRuns, fuzzShare));
}

// Counts the cases and, on failure, throws fast-check's report followed by the replay command. It
// replaces the default reporter: a plugin that throws in onAllRunsComplete ends `fc.assert` there.
function replayReport<T>(): fc.PluginInstance<T> {
  return {
    onAllRunsComplete(details) {
      fuzzCount.cases += details.numRuns;
      fuzzCount.properties += 1;
      if (!details.failed) return;
      const report = fc.defaultReportMessage(details) ?? "Property failed";
      const replay = details.counterexamplePath === null ? "" : `\n\n${replayCommand(details.seed, details.counterexamplePath)}`;
      throw new Error(`${report}${replay}`, { cause: details.errorInstance });
    },
  };
}

/** The shell command that replays one counterexample of the current test. */
export function replayCommand(seed: number, path: string): string {
  const { currentTestName, testPath } = expect.getState();
  // vitest's -t pattern is a regular expression matched against the test's full name: its own name, at the end, is enough.
  const name = currentTestName?.split(" > ").at(-1);
  const pattern = name ? ` -t ${shellQuote(`${escapeRegExp(name)}$`)}` : "";
  const only = pattern ? ` --${pattern}` : "";
  const file = testPath ? `\n(or in its file alone: FUZZ_SEED=${seed} FUZZ_PATH=${path} npx vitest run ${shellQuote(relative(testPath))}${pattern})` : "";
  return `Replay: FUZZ_SEED=${seed} FUZZ_PATH=${path} npm run fuzz${only}${file}`;
}

/** How long one property may take when fuzzing: long runs are the point there. */
export const FUZZ_TEST_TIMEOUT_MS = 30 * 60_000;

/**
 * Sets up a props file; call it once at its top. When fuzzing it lifts the file's test timeout to
 * {@link FUZZ_TEST_TIMEOUT_MS} and, after the file's properties ran, logs `[fuzz] <file>: N cases`.
 */
export function fuzzSummary(fileUrl: string): void {
  if (fuzzing) vi.setConfig({ testTimeout: FUZZ_TEST_TIMEOUT_MS });
  afterAll(() => {
    if (!fuzzing) return;
    const file = relative(new URL(fileUrl).pathname);
    console.log(`[fuzz] ${file}: ${fuzzCount.cases} cases in ${fuzzCount.properties} properties`);
  });
}

const relative = (path: string): string => path.replace(`${process.cwd()}/`, "");
const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
