import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SERVICE_NODE_FLAGS } from "../support/service-process.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path: string) => readFileSync(join(root, path), "utf8");

describe("V8 flags of the service", () => {
  // The same flags in four places: what the tests and benches measure is what production runs.
  it("are the same in npm start, the systemd unit, the Dockerfile and the tests' service processes", () => {
    const start = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts.start!;
    const unit = read("deploy/nerve.service").match(/^ExecStart=(.*)$/m)![1]!;
    const cmd = JSON.parse(read("deploy/compose/Dockerfile").match(/^CMD (\[.*\])$/m)![1]!) as string[];
    const expected = ["node", ...SERVICE_NODE_FLAGS, "--import", "tsx", "src/main.ts"].join(" ");
    expect(start).toBe(expected);
    expect(unit).toBe(expected.replace(/^node /, "/usr/bin/node "));
    expect(cmd.join(" ")).toBe(expected);
  });
});
