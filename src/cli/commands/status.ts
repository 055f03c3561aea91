/** `status`: instances and what each owns, streams, consumers, outbox and timers on one screen; exit 1 when unhealthy. */
import { ExitCodes, usageError } from "../cli-error.js";
import { numberOption, type CliCommand, type OptionValues } from "../command.js";
import { ranges, seconds, statusReport, type StatusReport } from "../status-report.js";
import { displaySafe } from "../terminal.js";

/** Defaults of the health thresholds. */
export const STATUS_DEFAULTS = { maxLag: 1000, maxOutboxAgeS: 30, maxTimerDelayS: 60, waitMs: 1000 } as const;

/** `status`. */
export const status: CliCommand = {
  name: "status",
  args: "",
  arity: { min: 0, max: 0 },
  summary: "health on one screen: instances and what each owns, streams, consumers, outbox, timers",
  help: `Every instance answers nerve.admin.status for itself (its partitions, its running consumers, and
the outbox, timers and dead letters of the database); streams and durable consumers are read
through JetStream. External subscribers' durables are shown, never judged.

Unhealthy (exit code 1) when any of these holds; each is printed under "problems":
  - no instance answers within --wait, or a live member (PostgreSQL) does not;
  - one of the five event streams is missing;
  - a partition (of 64) has no owner: commands for its aggregates get no answer;
  - one of Nerve's consumers runs on no instance, has a dead letter, or is more than
    --max-lag events behind (pending + ack-pending);
  - the outbox is not draining: its oldest unpublished event waited more than --max-outbox-age;
  - a due timer has not fired for more than --max-timer-delay.
Healthy: exit code 0.

examples: npm run nerve -- status
          npm run nerve -- status --json | jq .problems`,
  options: {
    json: { type: "boolean", description: "print the whole report as one JSON object" },
    wait: { type: "string", value: "ms", description: `how long to wait for the instances' answers (default ${STATUS_DEFAULTS.waitMs}): on PostgreSQL until every live member answered, which the answers name (one that does not is a problem); on SQLite until 500 ms pass without one` },
    "max-lag": { type: "string", value: "events", description: `lag above which a consumer is unhealthy (default ${STATUS_DEFAULTS.maxLag})` },
    "max-outbox-age": { type: "string", value: "seconds", description: `oldest unpublished event's wait above which the outbox is not draining (default ${STATUS_DEFAULTS.maxOutboxAgeS})` },
    "max-timer-delay": { type: "string", value: "seconds", description: `lateness above which a due timer counts as not firing (default ${STATUS_DEFAULTS.maxTimerDelayS})` },
  },
  check: (_args, values) => void statusOptions(values),
  async run({ nc, config, print }, _args, values) {
    const { waitMs, thresholds } = statusOptions(values);
    const report = await statusReport(nc, config.NATS_URL, waitMs, thresholds);
    if (values.json) print(JSON.stringify(report));
    else for (const line of renderStatus(report)) print(line);
    return report.healthy ? ExitCodes.Ok : ExitCodes.Failed;
  },
};

/** `status`' options; a bad one is a usage error. */
function statusOptions(values: OptionValues) {
  const opt = (name: string, def: number) => numberOption("status", values, name, def);
  // Whole milliseconds Node's timers take: nats.js refused a fraction and fired past 2^31 - 1 at once,
  // and the report then said no instance answered.
  const waitMs = opt("wait", STATUS_DEFAULTS.waitMs);
  if (!Number.isInteger(waitMs) || waitMs < 1 || waitMs > 2 ** 31 - 1) throw usageError(`--wait is whole milliseconds from 1 to ${2 ** 31 - 1}, not ${JSON.stringify(values.wait)}`, "status");
  return {
    waitMs,
    thresholds: {
      maxLag: opt("max-lag", STATUS_DEFAULTS.maxLag),
      maxOutboxAgeMs: opt("max-outbox-age", STATUS_DEFAULTS.maxOutboxAgeS) * 1000,
      maxTimerDelayMs: opt("max-timer-delay", STATUS_DEFAULTS.maxTimerDelayS) * 1000,
    },
  };
}

/** The report as lines of text. */
export function renderStatus(r: StatusReport): string[] {
  const lines = [`Nerve at ${r.nats_url}, ${r.checked_at}: ${r.healthy ? "HEALTHY" : "UNHEALTHY"}`, ""];
  lines.push(...table(`Instances (${r.instances.length})`, ["instance", "roles", "partitions", "consumers", "up", "version"], r.instances.map((i) => [
    i.instance,
    i.roles.join(","),
    i.partitions.length > 0 ? `${i.partitions.length} (${ranges(i.partitions)})` : "0",
    `${i.consumers.active.length} of ${i.consumers.known.length}`,
    uptime(Date.parse(r.checked_at) - Date.parse(i.started_at)),
    i.version,
  ])));
  if (r.partitions.unowned.length > 0) lines.push(`  unowned partitions: ${ranges(r.partitions.unowned)}`);
  lines.push(...table("Streams", ["stream", "messages", "bytes", "replicas"], r.streams.map((s) => [s.name, String(s.messages), bytes(s.bytes), String(s.replicas)])));
  lines.push(...table("Consumers", ["consumer", "streams", "pending", "ack-pending", "dead letters", "runs on"], r.consumers.map((c) => [
    c.nerve ? c.name : `${c.name} (external)`,
    String(c.streams.length),
    String(c.pending),
    String(c.ack_pending),
    c.nerve ? String(c.dead_letters) : "-",
    c.nerve ? c.runs_on.join(",") || "none" : "-",
  ])));
  const o = r.outbox;
  const t = r.timers;
  lines.push(`Outbox  ${o ? `${o.pending} unpublished${o.oldest_age_ms === null ? "" : `, the oldest waiting ${seconds(o.oldest_age_ms)}`}` : "unknown (no instance answered)"}`);
  lines.push(`Timers  ${t ? `${t.pending} pending, ${t.overdue} due${t.oldest_overdue_ms === null ? "" : `, the oldest ${seconds(t.oldest_overdue_ms)} late`}` : "unknown (no instance answered)"}`);
  if (r.problems.length > 0) lines.push("", "Problems", ...r.problems.map((p) => `  ✗ ${p}`));
  return lines;
}

function table(title: string, head: string[], cells: string[][]): string[] {
  // Names come from elsewhere (another user's durables, an instance's id): nothing a terminal acts on.
  const rows = cells.map((r) => r.map(displaySafe));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd();
  return [title, line(head), ...rows.map(line), ""];
}

// 42s, 3m07s, 5h03m, 2d04h
function uptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

function bytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}
