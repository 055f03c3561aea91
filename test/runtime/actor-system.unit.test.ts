import { describe, expect, it } from "vitest";
import { isNerveError } from "../../contracts/index.js";
import { ActorSystem } from "../../src/runtime/index.js";

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

function system(over: Partial<ConstructorParameters<typeof ActorSystem>[0]> = {}) {
  const loads: string[] = [];
  const s = new ActorSystem({
    load: async (type, id) => {
      loads.push(`${type}/${id}`);
      return { state: { id }, version: 3 };
    },
    mailboxSize: 4,
    maxActors: 100,
    idleMs: 60_000,
    ...over,
  });
  return { s, loads };
}

describe("ActorSystem", () => {
  it("activates an actor on first use from its snapshot, once", async () => {
    const { s, loads } = system();
    const v = await s.read("User", "a", (a) => [a.state, a.version]);
    await s.exclusive("User", "a", async () => undefined);
    expect(v).toEqual([{ id: "a" }, 3]);
    expect(loads).toEqual(["User/a"]);
    s.close();
  });

  it("runs one actor's jobs strictly one at a time, in arrival order", async () => {
    const { s } = system();
    const order: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const job = (name: string) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      order.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 5));
      order.push(`end ${name}`);
      running--;
    };
    await Promise.all([s.exclusive("User", "a", job("1")), s.exclusive("User", "a", job("2")), s.exclusive("User", "a", job("3"))]);
    expect(maxRunning).toBe(1);
    expect(order).toEqual(["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]);
    s.close();
  });

  it("runs different actors side by side", async () => {
    const { s } = system();
    const gate = deferred();
    const a = s.exclusive("User", "a", () => gate.promise);
    const b = await s.exclusive("User", "b", async () => "b done");
    expect(b).toBe("b done");
    gate.resolve();
    await a;
    s.close();
  });

  it("lets reads run beside a running command and see the committed state", async () => {
    const { s } = system();
    const gate = deferred();
    const cmd = s.exclusive("User", "a", async (actor) => {
      await gate.promise;
      actor.state = { id: "a", changed: true };
    });
    expect(await s.read("User", "a", (a) => a.state)).toEqual({ id: "a" });
    gate.resolve();
    await cmd;
    expect(await s.read("User", "a", (a) => a.state)).toEqual({ id: "a", changed: true });
    s.close();
  });

  it("answers unavailable at once past the mailbox bound, without queueing", async () => {
    const { s } = system({ mailboxSize: 2 });
    const gate = deferred();
    const accepted = [s.exclusive("User", "a", () => gate.promise), s.exclusive("User", "a", () => gate.promise)];
    const refused = await s.exclusive("User", "a", async () => "ran").catch((e) => e);
    expect(isNerveError(refused, "unavailable")).toBe(true);
    expect(s.stats.rejected).toBe(1);
    gate.resolve();
    await Promise.all(accepted);
    s.close();
  });

  it("caps live actors, passivating the least recently used idle ones", async () => {
    const { s, loads } = system({ maxActors: 3 });
    for (const id of ["a", "b", "c", "d", "e"]) await s.exclusive("User", id, async () => undefined);
    expect(s.size).toBeLessThanOrEqual(3);
    await s.read("User", "a", () => undefined); // a was evicted: loads again
    expect(loads.filter((l) => l === "User/a")).toHaveLength(2);
    s.close();
  });

  it("at a large cap, makes room in batches of cap/256 least recently used idle actors, never past the cap", async () => {
    // Given a full cache of 1,024 actors, used in order
    const { s, loads } = system({ maxActors: 1024 });
    for (let i = 0; i < 1024; i++) await s.read("User", `u${i}`, () => undefined);
    await s.read("User", "u0", () => undefined); // u0 is now the most recently used
    expect(s.size).toBe(1024);
    // When one more activates
    await s.read("User", "new", () => undefined);
    // Then the four least recently used (u1..u4) went in one batch, u0 stayed, and the cap holds
    expect(s.size).toBe(1024 - 4 + 1);
    expect(s.stats.passivations).toBe(4);
    await s.read("User", "u0", () => undefined);
    await s.read("User", "u5", () => undefined);
    expect(loads.filter((l) => l === "User/u0" || l === "User/u5")).toHaveLength(2);
    await s.read("User", "u1", () => undefined);
    expect(loads.filter((l) => l === "User/u1")).toHaveLength(2);
    for (let i = 0; i < 3000; i++) {
      await s.read("User", `v${i}`, () => undefined);
      expect(s.size).toBeLessThanOrEqual(1024);
    }
    s.close();
  });

  it("passivates actors idle longer than idleMs", async () => {
    const { s } = system({ idleMs: 20 });
    await s.exclusive("User", "a", async () => undefined);
    expect(s.size).toBe(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(s.size).toBe(0);
    expect(s.stats.passivations).toBeGreaterThanOrEqual(1);
    s.close();
  });

  it("refuses new jobs once draining, and drain waits for the mailboxes", async () => {
    const { s } = system();
    let done = false;
    const job = s.exclusive("User", "a", async () => {
      await new Promise((r) => setTimeout(r, 20));
      done = true;
    });
    await s.drain();
    expect(done).toBe(true);
    const refused = await s.exclusive("User", "b", async () => undefined).catch((e) => e);
    expect(isNerveError(refused, "unavailable")).toBe(true);
    await job;
    s.close();
  });
});

describe("ActorSystem activation failures", () => {
  it("fails jobs of an actor whose snapshot could not be loaded, then retries activation on next use", async () => {
    let fail = true;
    const s = new ActorSystem({
      load: async () => {
        if (fail) throw new Error("database is down");
        return { state: { ok: true }, version: 1 };
      },
      mailboxSize: 4,
      maxActors: 10,
      idleMs: 60_000,
    });
    const ran: string[] = [];
    await expect(s.exclusive("User", "a", async () => ran.push("first"))).rejects.toThrow("database is down");
    expect(ran).toEqual([]);
    fail = false;
    expect(await s.exclusive("User", "a", async (a) => a.state)).toEqual({ ok: true });
    s.close();
  });

  it("fails the jobs waiting for an actor whose reload failed, and loads it afresh at its next use: its state may be behind storage", async () => {
    let fail = false;
    let stored = 1;
    const s = new ActorSystem({
      load: async () => {
        if (fail) throw new Error("database is down");
        return { state: { stored }, version: stored };
      },
      mailboxSize: 4,
      maxActors: 10,
      idleMs: 60_000,
    });
    expect(await s.exclusive("User", "a", async (a) => a.version)).toBe(1);
    // A commit whose answer was lost did land (version 2); the reload after its failure fails too.
    const gate = deferred();
    const failing = s.exclusive("User", "a", async (a) => {
      await gate.promise;
      stored = 2;
      fail = true;
      await a.reload().catch(() => undefined);
      fail = false;
    });
    const waiting = s.exclusive("User", "a", async (a) => a.version);
    gate.resolve();
    await failing;
    await expect(waiting).rejects.toThrow("database is down");
    expect(await s.read("User", "a", (a) => a.version)).toBe(2);
    expect(await s.exclusive("User", "a", async (a) => a.state)).toEqual({ stored: 2 });
    s.close();
  });
});
