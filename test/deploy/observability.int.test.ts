/**
 * deploy/'s Grafana dashboard and Prometheus rules name only metrics a running service exports, and the
 * rules pass promtool (`check rules`, and the unit tests of deploy/prometheus/nerve-alerts.test.yml);
 * /metrics itself declares every `_total` a counter and passes `promtool check metrics`.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { startTestNerve, type TestNerve } from "../support/index.js";
import { ask, caughtUp, ok } from "../e2e/story.js";

const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const PROMTOOL = "/usr/bin/promtool";
// Not Nerve's: Prometheus records `up` for every scrape target itself.
const PROMETHEUS_OWN = new Set(["up"]);
// prom-client's default metrics (under the gateway's prefix) that count what is open now: gauges, which go
// down as well as up, named `_total` upstream. Not Nerve's to rename (nothing here reads them).
const PROM_CLIENT_GAUGES = new Set(["nerve_gateway_nodejs_active_handles_total", "nerve_gateway_nodejs_active_requests_total", "nerve_gateway_nodejs_active_resources_total"]);
// Exported only by an instance on PostgreSQL (the one here runs on SQLite); pg-query-metrics.int reads it there.
const POSTGRES_ONLY = new Set(["nerve_pg_queries_total"]);
const NOT_METRICS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"]);

/** The metric names a PromQL expression reads: no functions, keywords, label names, ranges or strings. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const names = new Set<string>();
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = bare.slice(m.index + m[0].length);
    const before = bare[m.index - 1] ?? "";
    if (/^\s*\(/.test(after) || /[0-9.]/.test(before) || NOT_METRICS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

/** Every PromQL expression of the dashboard: its panels' targets and its template variables' queries. */
async function dashboardExprs(): Promise<string[]> {
  const dash = JSON.parse(await readFile(`${DEPLOY}grafana/nerve-dashboard.json`, "utf8"));
  const exprs: string[] = [];
  for (const p of dash.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
  for (const v of dash.templating.list) if (v.type === "query") exprs.push(String(v.definition).replace(/^label_values\((.*),\s*\w+\)$/, "$1"));
  return exprs;
}

async function rules(): Promise<{ record?: string; alert?: string; expr: string }[]> {
  const doc = YAML.parse(await readFile(`${DEPLOY}prometheus/nerve-alerts.yml`, "utf8"));
  return doc.groups.flatMap((g: { rules: unknown[] }) => g.rules);
}

/** Metric names in a Prometheus exposition, histograms with their _bucket, _count and _sum series. */
function exported(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!);
    if (type === "histogram") for (const s of ["_bucket", "_count", "_sum"]) names.add(name + s);
  }
  return names;
}

/** promtool check metrics on `exposition` (its stdin): what it prints, and its exit code (1 with problems). */
function promtoolCheckMetrics(exposition: string): Promise<{ out: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn(PROMTOOL, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (out += d.toString()));
    p.once("error", reject);
    p.once("close", (code) => resolve({ out, code }));
    p.stdin.end(exposition);
  });
}

let t: TestNerve;
let exposition: string;
let metrics: Set<string>;

beforeAll(async () => {
  t = await startTestNerve();
  // One command, one query, one event through the consumers: every figure has had a reason to move.
  await ok(t, "users", "RegisterUser", "u-obs", { email: "obs@example.com", name: "Obs" });
  await ask(t, "GetUser", { user_id: "u-obs" });
  await caughtUp(t);
  const res = await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`);
  expect(res.status).toBe(200);
  exposition = await res.text();
  metrics = exported(exposition);
});
afterAll(async () => {
  await t?.close();
});

describe("/metrics", () => {
  it("declares every family of Nerve's named `_total` a counter", () => {
    const totals = [...exposition.matchAll(/^# TYPE (\S+_total) (\S+)$/gm)].map(([, name, type]) => ({ name: name!, type })).filter((f) => !PROM_CLIENT_GAUGES.has(f.name));
    // The service's own (requests, background failures, group commits, outbox, leases, …) and the gateway's.
    expect(totals.map((f) => f.name)).toEqual(expect.arrayContaining(["nerve_requests_total", "nerve_background_failures_total", "nerve_outbox_published_total", "nerve_lease_changes_total", "nerve_consumer_takes_total", "nerve_consumer_take_wait_seconds_total", "nerve_consumer_holds_total", "nerve_consumer_hold_timeouts_total", "nerve_sqlite_checkpoints_total", "nerve_gateway_frames_sent_total"]));
    expect(totals.filter((f) => f.type !== "counter")).toEqual([]);
  });

  it.skipIf(!existsSync(PROMTOOL))("passes promtool check metrics, but for prom-client's own `_total` gauges", async () => {
    const { out } = await promtoolCheckMetrics(exposition);
    // Each problem is a line that starts with its family's name: prom-client's three, nothing else.
    const flagged = out.split("\n").filter((l) => l.trim() !== "").map((l) => l.split(" ")[0]);
    expect(flagged.sort(), out).toEqual([...PROM_CLIENT_GAUGES].sort());
  });
});

describe("deploy/grafana/nerve-dashboard.json", () => {
  it("is a dashboard of schemaVersion 36 or later with a Prometheus datasource variable", async () => {
    const dash = JSON.parse(await readFile(`${DEPLOY}grafana/nerve-dashboard.json`, "utf8"));
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dash.templating.list).toContainEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
    for (const p of dash.panels.filter((p: { type: string }) => p.type !== "row")) expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
  });

  it("names only metrics the running service exports", async () => {
    const named = new Set((await dashboardExprs()).flatMap(metricNames));
    expect(named.size).toBeGreaterThan(20);
    expect([...named].filter((n) => !metrics.has(n) && !POSTGRES_ONLY.has(n)).sort()).toEqual([]);
  });
});

describe("deploy/prometheus/nerve-alerts.yml", () => {
  it("names only metrics the running service exports (or its own recording rules)", async () => {
    const all = await rules();
    const recorded = new Set(all.flatMap((r) => (r.record ? [r.record] : [])));
    const named = new Set(all.flatMap((r) => metricNames(r.expr)));
    expect([...named].filter((n) => !metrics.has(n) && !recorded.has(n) && !PROMETHEUS_OWN.has(n) && !POSTGRES_ONLY.has(n)).sort()).toEqual([]);
  });

  it("alerts on consumer lag, outbox backlog, a stuck outbox row, overdue timers, dead letters, readiness, unowned partitions, error rate, refused queries and the WAL, each with for, severity, summary and runbook", async () => {
    const alerts = (await rules()).filter((r) => r.alert) as { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
    const runbook = await readFile(`${DEPLOY}RUNBOOK.md`, "utf8");
    const anchors = new Set([...runbook.matchAll(/^#+ (.+)$/gm)].map(([, h]) => h!.toLowerCase().replace(/[^a-z0-9 -]/g, "").replace(/ /g, "-")));
    for (const a of alerts) {
      expect(a.for, a.alert).toMatch(/^\d+[smh]$/);
      expect(["warning", "critical"], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const anchor = a.annotations?.runbook_url?.match(/^deploy\/RUNBOOK\.md#(.+)$/)?.[1];
      expect(anchors.has(anchor ?? ""), `${a.alert}: runbook anchor ${anchor}`).toBe(true);
    }
    const reads = (m: string) => alerts.some((a) => a.expr.includes(m));
    for (const m of ["nerve:consumer_lag:sum", "nerve_outbox_pending", "nerve_outbox_oldest_pending_age_seconds", "nerve_timers_oldest_overdue_age_seconds", "nerve_consumer_dead_letters", "nerve_ready", "nerve_partitions_owned", "nerve:request_errors:ratio_rate5m", "nerve_sqlite_queries_total", "nerve_pg_queries_total", "nerve_sqlite_wal_frames"]) expect(reads(m), m).toBe(true);
  });

  it.skipIf(!existsSync(PROMTOOL))("passes promtool check rules and its unit tests", async () => {
    const run = promisify(execFile);
    const check = await run(PROMTOOL, ["check", "rules", "nerve-alerts.yml"], { cwd: `${DEPLOY}prometheus` });
    expect(check.stdout).toMatch(/SUCCESS: \d+ rules found/);
    const unit = await run(PROMTOOL, ["test", "rules", "nerve-alerts.test.yml"], { cwd: `${DEPLOY}prometheus` });
    expect(unit.stdout + unit.stderr).toContain("SUCCESS");
  });
});

describe("metricNames", () => {
  it("keeps metric names and drops functions, keywords, labels, ranges and variables", () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, command) (rate(nerve_command_reply_seconds_bucket{job=~"$job"}[$__rate_interval])))')).toEqual(["nerve_command_reply_seconds_bucket"]);
    expect(metricNames("nerve:consumer_lag:max > 100 and deriv(nerve:consumer_lag:max[10m]) > 0").sort()).toEqual(["nerve:consumer_lag:max"]);
    expect(metricNames('max by (job) (a_total{result!="x"}) / on(job) group_left b 1e-9').sort()).toEqual(["a_total", "b"]);
  });
});
