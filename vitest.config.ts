import { configDefaults, defineConfig } from "vitest/config";

// In CI a failed integration or end-to-end test runs again, twice at most (vitest reports the retry):
// uWS now and then drops a fresh WebSocket 1-2 ms after open with 1006 and no frame (stop 8's note,
// seen once in three full runs this session, cause still open). A red CI would hold back everything
// else; .ci/run prints each test that passed only on a retry as a `flaky:` line with its first failure.
const retry = process.env.CI ? 2 : 0;

// Property tests never run again: a counterexample is a real failure, and a retry draws other inputs
// and throws it away.
const props = "test/**/*.props.*";

// The chaos run (test/chaos/) is opt-in: its project exists only under NERVE_CHAOS (npm run test:chaos),
// and its suffix `.chaos.test.ts` matches none of the tiers' patterns, so `npm test` never runs it.
const chaos = process.env.NERVE_CHAOS
  ? [{ test: { name: "chaos", include: ["test/chaos/**/*.chaos.test.ts"], testTimeout: 1_800_000, hookTimeout: 180_000, retry: 0 } }]
  : [];

/** Three tiers, told apart by file name; `npm test` runs them all (and the chaos run only when asked). */
export default defineConfig({
  test: {
    reporters: process.env.CI_JSON_REPORT
      ? ["default", ["json", { outputFile: process.env.CI_JSON_REPORT }]]
      : ["default"],
    projects: [
      { test: { name: "unit", include: ["test/**/*.unit.test.ts"] } },
      { test: { name: "int", include: ["test/**/*.int.test.ts"], exclude: [...configDefaults.exclude, props], testTimeout: 60_000, hookTimeout: 60_000, retry } },
      { test: { name: "int-props", include: ["test/**/*.props.int.test.ts"], testTimeout: 60_000, hookTimeout: 60_000, retry: 0 } },
      { test: { name: "e2e", include: ["test/**/*.e2e.test.ts"], exclude: [...configDefaults.exclude, props], testTimeout: 120_000, hookTimeout: 60_000, retry } },
      ...chaos,
    ],
  },
});
