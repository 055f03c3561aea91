import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SERVICE_ALLOCATOR, SERVICE_ENV, SERVICE_NODE_FLAGS } from "../support/service-process.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path: string) => readFileSync(join(root, path), "utf8");

describe("V8 flags of the service", () => {
  // The same flags in four places: what the tests and benches measure is what production runs.
  it("are the same in npm start, the systemd unit, the Dockerfile and the tests' service processes", () => {
    const start = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts.start!;
    const unit = read("deploy/nerve.service").match(/^ExecStart=(.*)$/m)![1]!;
    const cmd = JSON.parse(read("deploy/compose/Dockerfile").match(/^CMD (\[.*\])$/m)![1]!) as string[];
    const expected = ["node", ...SERVICE_NODE_FLAGS, "--import", "tsx", "src/main.ts"].join(" ");
    expect(start).toBe(`${Object.entries(SERVICE_ENV).map(([k, v]) => `${k}=${v} `).join("")}${expected}`);
    expect(unit).toBe(expected.replace(/^node /, "/usr/bin/node "));
    expect(cmd.join(" ")).toBe(expected);
  });

  it("run with the same environment (glibc's arenas) in npm start, the systemd unit, the Dockerfile and the tests' service processes", () => {
    const unit = read("deploy/nerve.service");
    const docker = read("deploy/compose/Dockerfile");
    const start = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts.start!;
    expect(Object.keys(SERVICE_ENV).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(SERVICE_ENV)) {
      expect(unit).toMatch(new RegExp(`^Environment=${k}=${v}$`, "m"));
      expect(docker).toMatch(new RegExp(`^ENV ${k}=${v}$`, "m"));
      expect(start.startsWith(`${k}=${v} `) || start.includes(` ${k}=${v} `)).toBe(true);
    }
  });

  it("preload jemalloc with the same settings in the systemd unit and the Dockerfile (which installs it)", () => {
    const unit = read("deploy/nerve.service");
    const docker = read("deploy/compose/Dockerfile");
    expect(unit).toMatch(new RegExp(`^Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/${SERVICE_ALLOCATOR.library}$`, "m"));
    expect(docker).toMatch(new RegExp(`^ENV LD_PRELOAD=/usr/local/lib/${SERVICE_ALLOCATOR.library}$`, "m"));
    expect(docker).toMatch(/apt-get install -y --no-install-recommends libjemalloc2/);
    expect(docker).toMatch(new RegExp(`ln -s "/usr/lib/\\$\\(uname -m\\)-linux-gnu/${SERVICE_ALLOCATOR.library}" /usr/local/lib/${SERVICE_ALLOCATOR.library}`));
    for (const [k, v] of Object.entries(SERVICE_ALLOCATOR.env)) {
      expect(unit).toMatch(new RegExp(`^Environment=${k}=${v}$`, "m"));
      expect(docker).toMatch(new RegExp(`^ENV ${k}=${v}$`, "m"));
    }
  });
});
