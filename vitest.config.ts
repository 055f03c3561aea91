import { defineConfig } from "vitest/config";

/** Three tiers, told apart by file name; `npm test` runs them all. */
export default defineConfig({
  test: {
    reporters: process.env.CI_JSON_REPORT
      ? ["default", ["json", { outputFile: process.env.CI_JSON_REPORT }]]
      : ["default"],
    projects: [
      { test: { name: "unit", include: ["test/**/*.unit.test.ts"] } },
      { test: { name: "int", include: ["test/**/*.int.test.ts"], testTimeout: 60_000, hookTimeout: 60_000 } },
      { test: { name: "e2e", include: ["test/**/*.e2e.test.ts"], testTimeout: 120_000, hookTimeout: 60_000 } },
    ],
  },
});
