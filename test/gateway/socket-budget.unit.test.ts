import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultSocketBudget, openFilesLimit, socketBudgetFor } from "../../src/gateway/socket-budget.js";

describe("the gateway's socket budget", () => {
  it("reads the soft open-files limit of /proc/self/limits", () => {
    const dir = mkdtempSync(join(tmpdir(), "limits-"));
    const file = join(dir, "limits");
    writeFileSync(file, "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n");
    expect(openFilesLimit(file)).toBe(1024);
    writeFileSync(file, "Max open files            unlimited            unlimited            files     \n");
    expect(openFilesLimit(file)).toBe(Number.MAX_SAFE_INTEGER);
    expect(openFilesLimit(join(dir, "absent"))).toBeUndefined();
    expect(openFilesLimit()).toBeGreaterThan(0);
  });

  it("leaves a tenth of the limit, at least 256 descriptors, to everything else; never fewer than 16 sockets", () => {
    expect(socketBudgetFor(1_048_576)).toBe(1_048_576 - 104_858);
    expect(socketBudgetFor(20_000)).toBe(18_000);
    expect(socketBudgetFor(1024)).toBe(768);
    expect(socketBudgetFor(256)).toBe(16);
    expect(socketBudgetFor(undefined)).toBe(10_000);
    expect(defaultSocketBudget()).toBe(socketBudgetFor(openFilesLimit()));
  });
});
