/**
 * What the instances' JSON log lines (pino) tell the chaos run: each consumer lease taken (who, when,
 * which epoch), the hand-backs and waits of a take, and every warning or error — plus every line, to a
 * file per instance for a post-mortem.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { join } from "node:path";

/** A consumer lease taken, by the taker's log ("lease acquired" / "leases acquired", group consumers). */
export interface Take {
  consumer: string;
  instance: string;
  epoch: number;
  /** The log line's time (ms since the epoch). */
  at: number;
}

/** A warning or an error an instance logged. */
export interface Noted {
  instance: string;
  at: number;
  level: number;
  msg: string;
  line: string;
}

const WARN = 40;
const KEEP_NOTED = 2000;

/** Collects the log lines of every instance of a run. */
export class LogBook {
  readonly takes: Take[] = [];
  readonly noted: Noted[] = [];
  /** Lines by message, for the take's steps ("handed a former holder's deliveries back …", "waiting for …"). */
  readonly counts = new Map<string, number>();
  readonly #files = new Map<string, WriteStream>();
  readonly #started = new Map<string, (() => void)[]>();

  /** Writes every line of instance `id` under `dir`. */
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The onLine callback of instance `id`. */
  lineOf(id: string): (line: string) => void {
    let file = this.#files.get(id);
    if (!file) this.#files.set(id, (file = createWriteStream(join(this.dir, `${id}.log`), { flags: "a" })));
    const out = file;
    return (line) => {
      out.write(`${line}\n`);
      let j: { level?: number; time?: number; msg?: string; group?: string; key?: string; epoch?: number; leases?: { key: string; epoch: number }[]; consumer?: string };
      try {
        j = JSON.parse(line) as typeof j;
      } catch {
        return;
      }
      const at = j.time ?? Date.now();
      const msg = j.msg ?? "";
      if (j.group === "consumers" && msg === "lease acquired" && j.key) this.takes.push({ consumer: j.key, instance: id, epoch: Number(j.epoch), at });
      if (j.group === "consumers" && msg === "leases acquired") for (const l of j.leases ?? []) this.takes.push({ consumer: l.key, instance: id, epoch: Number(l.epoch), at });
      if (j.consumer && /former holder|earlier reader/.test(msg)) this.counts.set(msg, (this.counts.get(msg) ?? 0) + 1);
      if (msg === "nerve started") for (const f of this.#started.get(id)?.splice(0) ?? []) f();
      if ((j.level ?? 0) >= WARN && this.noted.length < KEEP_NOTED) this.noted.push({ instance: id, at, level: j.level ?? 0, msg, line: line.slice(0, 600) });
    };
  }

  /** Resolves at instance `id`'s next "nerve started" line; rejects after `ms`. */
  started(id: string, ms = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id} did not log "nerve started" within ${ms} ms`)), ms);
      const list = this.#started.get(id) ?? [];
      list.push(() => (clearTimeout(timer), resolve()));
      this.#started.set(id, list);
    });
  }

  /** Flushes and closes the files. */
  async close(): Promise<void> {
    await Promise.all([...this.#files.values()].map((f) => new Promise<void>((r) => f.end(() => r()))));
  }
}
