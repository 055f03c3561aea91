/** bench/results-file.ts: each results file names the code it ran — the checkout's commit, and whether its code had changes not committed. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { sourceState } from "../../bench/results-file.js";

describe("bench results' source", () => {
  const dir = mkdtempSync(join(tmpdir(), "nerve-results-source-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd: dir, stdio: "ignore" });

  it("names the commit, and whether the code differs from it (results files and other files do not count)", () => {
    expect(sourceState(dir)).toEqual({ commit: "unknown", uncommitted: false });
    git("init", "-q");
    for (const d of ["src", "bench/results", "docs"]) execFileSync("mkdir", ["-p", join(dir, d)]);
    writeFileSync(join(dir, "src/a.ts"), "1");
    writeFileSync(join(dir, "bench/results/r.json"), "{}");
    writeFileSync(join(dir, "docs/x.md"), "x");
    git("add", ".");
    git("commit", "-qm", "one");
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();
    expect(sourceState(dir)).toEqual({ commit, uncommitted: false });
    writeFileSync(join(dir, "bench/results/r.json"), "{\"a\":1}");
    writeFileSync(join(dir, "docs/x.md"), "y");
    expect(sourceState(dir)).toEqual({ commit, uncommitted: false });
    writeFileSync(join(dir, "src/a.ts"), "2");
    expect(sourceState(dir)).toEqual({ commit, uncommitted: true });
  });
});
