/** deploy/nerve.service restarts what a restart can fix, and not an invalid configuration. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ServiceExitCodes } from "../../src/app/exit-codes.js";

const unit = readFileSync(join(import.meta.dirname, "..", "..", "deploy", "nerve.service"), "utf8");
const directive = (name: string) => [...unit.matchAll(new RegExp(`^${name}=(.*)$`, "gm"))].map((m) => m[1]);

describe("deploy/nerve.service", () => {
  it("restarts a failed service, but not one whose configuration is invalid", () => {
    expect(directive("Restart")).toEqual(["on-failure"]);
    expect(directive("RestartPreventExitStatus")).toEqual([String(ServiceExitCodes.BadConfiguration)]);
    expect(ServiceExitCodes.Failed).not.toBe(ServiceExitCodes.BadConfiguration);
  });
});
