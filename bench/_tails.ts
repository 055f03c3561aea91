import type { Nerve } from "../src/app/index.js";
type V = { metricName?: string; value: number; labels: Record<string, string | number> };
export async function tails(nerve: Nerve): Promise<Record<string, Record<string, number>>> {
  const registry = nerve.gateway.metrics.registry;
  const out: Record<string, Record<string, number>> = {};
  for (const name of ["nerve_command_reply_seconds", "nerve_command_stage_seconds", "nerve_group_commit_seconds", "nerve_relay_publish_ack_seconds"]) {
    const m = registry.getSingleMetric(name)!;
    for (const v of ((await m.get()) as { values: V[] }).values) {
      if (!v.metricName?.endsWith("_bucket")) continue;
      const key = name.replace("nerve_", "") + (v.labels.stage ? ":" + v.labels.stage : "");
      const le = String(v.labels.le);
      (out[key] ??= {})[le] = (out[key]![le] ?? 0) + v.value;
    }
  }
  return out;
}
