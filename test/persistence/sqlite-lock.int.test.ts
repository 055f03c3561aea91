/** SQLite serves exactly one instance (CONTRACT.md §8): the service's open holds the file; a crash never blocks the next start. */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startNerve, type Nerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { createLogger } from "../../src/log/index.js";
import { openDatabase, type Database } from "../../src/persistence/index.js";
import { SqliteInUseError } from "../../src/persistence/sqlite-lock.js";
import { exited, killOnExit } from "../support/children.js";
import { startNatsServer, tempSqlitePath, type NatsServerHandle } from "../support/index.js";

const root = join(import.meta.dirname, "..", "..");
const REFUSAL = /the SQLite database .+ is in use by another Nerve instance \(pid \d+.*\); SQLite serves exactly one instance — run several instances on PostgreSQL \(NERVE_DB=postgres:\/\/…\)/;

// Another process taking the file as the service's open does (its lock alone: MikroORM would add a second
// to each child's start): "hold" keeps it until killed, "try" reports and exits.
const CHILD = `
  const { lockSqliteInstance } = await import("./src/persistence/sqlite-lock.ts");
  try {
    const lock = await lockSqliteInstance(process.env.DB_PATH);
    console.log("held");
    if (process.env.MODE === "try") { await lock.release(); process.exit(0); }
    setInterval(() => {}, 60_000);
  } catch (err) {
    console.log(String(err.message));
    process.exit(3);
  }`;

interface Child {
  proc: ChildProcess;
  /** Resolves with the first line the child prints. */
  firstLine: Promise<string>;
}

function child(path: string, mode: "hold" | "try"): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], { cwd: root, env: { ...process.env, DB_PATH: path, MODE: mode }, stdio: ["ignore", "pipe", "inherit"] });
  killOnExit(proc);
  const firstLine = new Promise<string>((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    proc.once("exit", (code) => reject(new Error(`child exited (${code}) before printing a line: ${out}`)));
  });
  return { proc, firstLine };
}

async function tryInChild(path: string): Promise<string> {
  const c = child(path, "try");
  const line = await c.firstLine;
  await exited(c.proc);
  return line;
}

let file: { path: string; cleanup(): Promise<void> };
let url: string;
const open: Database[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  file = await tempSqlitePath();
  url = `sqlite:${file.path}`;
});
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill("SIGKILL");
    await exited(c);
  }
  for (const db of open.splice(0)) await db.close().catch(() => undefined);
});
afterAll(async () => {
  await file?.cleanup();
});

describe("the service's hold on its SQLite file", () => {
  it("refuses a second service open in the same process, naming the holder and PostgreSQL, while inspection opens still work", async () => {
    const first = await openDatabase({ url, exclusiveInstance: true });
    open.push(first);
    const err = await openDatabase({ url, exclusiveInstance: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SqliteInUseError);
    expect((err as Error).message).toMatch(REFUSAL);
    expect((err as Error).message).toContain(`${file.path} is in use`);
    expect((err as Error).message).toContain(`(pid ${process.pid}, in this process)`);
    // The CLI and tests read the running service's file: no option, no lock.
    const inspector = await openDatabase({ url });
    expect(await inspector.execute("select count(*) as n from nerve_outbox", [], "get")).toEqual({ n: 0 });
    await inspector.close();
    // The refused open closed its own handle on the lock file; the holder's lock survived that.
    for (const line of await Promise.all([tryInChild(file.path), tryInChild(file.path)])) {
      expect(line).toMatch(REFUSAL);
      expect(line).toContain(`(pid ${process.pid})`);
    }
    // The holder still works.
    expect(await first.execute("select 1 as one", [], "get")).toEqual({ one: 1 });
  });

  it("lets the next start in once the holder has closed, here and in another process", async () => {
    const first = await openDatabase({ url, exclusiveInstance: true });
    await first.close();
    const second = await openDatabase({ url, exclusiveInstance: true });
    await second.close();
    expect(await tryInChild(file.path)).toBe("held");
    const third = await openDatabase({ url, exclusiveInstance: true });
    open.push(third);
  });

  it("takes over at once from a holder killed with SIGKILL", async () => {
    const holder = child(file.path, "hold");
    children.push(holder.proc);
    expect(await holder.firstLine).toBe("held");
    const refused = await openDatabase({ url, exclusiveInstance: true }).catch((e: unknown) => e);
    expect(String((refused as Error).message)).toContain(`(pid ${holder.proc.pid})`);
    holder.proc.kill("SIGKILL");
    await exited(holder.proc);
    // The lock file still names the dead pid; the kernel dropped its lock with the process. There is no
    // waiting for a holder to go: a held lock is refused (above), so an open that succeeds took it over.
    const db = await openDatabase({ url, exclusiveInstance: true });
    open.push(db);
    // It holds the file now: the next taker is refused, naming this process.
    expect(await tryInChild(file.path)).toContain(`(pid ${process.pid}`);
  });

  it("ignores the option on an in-memory database", async () => {
    const a = await openDatabase({ url: "sqlite::memory:", exclusiveInstance: true });
    open.push(a);
    // Each open of :memory: is a database of its own: the second is not refused as the first's rival.
    const b = await openDatabase({ url: "sqlite::memory:", exclusiveInstance: true }).catch((e: unknown) => e);
    if (!(b instanceof Error)) open.push(b as Database);
    expect(b).not.toBeInstanceOf(Error);
    expect(a.sqliteFile).toBeUndefined();
    expect((b as Database).sqliteFile).toBeUndefined();
  });
});

describe("a second Nerve on the same SQLite file", () => {
  let nats: NatsServerHandle;
  beforeAll(async () => {
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it("refuses to start with a message naming PostgreSQL; after the first stops, a new start works", async () => {
    const db = await tempSqlitePath();
    const env = { NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0" };
    const first = await startNerve(loadConfig(env), createLogger("silent"));
    try {
      const err = await startNerve(loadConfig(env), createLogger("silent")).catch((e: unknown) => e);
      if (!(err instanceof Error)) await (err as Nerve).stop();
      expect(String((err as Error).message)).toMatch(REFUSAL);
      // The refused start left the running one alone.
      await first.bus.execute({ context: "users", type: "RegisterUser", aggregateId: "lock-1", body: { email: "lock-1@example.com", name: "L" } });
    } finally {
      await first.stop();
    }
    const again = await startNerve(loadConfig(env), createLogger("silent"));
    await again.stop();
    await db.cleanup();
  });
});
