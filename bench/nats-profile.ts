/**
 * A CPU profile of nats-server, for benches that need to say where the server's time goes: the server
 * runs with `--profile <port>` (Go's net/http/pprof), and this reads `/debug/pprof/profile` and sums
 * its samples by Go function, flat (the function itself) and cumulative (it and what it called).
 */
import { gunzipSync } from "node:zlib";
import { Profile } from "pprof-format";

/** Where nats-server's CPU went over a profile. */
export interface NatsProfile {
  seconds: number;
  /** CPU sampled over the profile, ms. */
  totalMs: number;
  /** The functions with the most CPU of their own, ms, most first. */
  flat: Array<[string, number]>;
  /** The functions with the most CPU under them, ms, most first. */
  cumulative: Array<[string, number]>;
}

/** Profiles the nats-server whose profiling port is `port` for `seconds`; `top` functions of each kind. */
export async function natsCpuProfile(port: number, seconds: number, top = 15): Promise<NatsProfile> {
  const res = await fetch(`http://127.0.0.1:${port}/debug/pprof/profile?seconds=${seconds}`, { signal: AbortSignal.timeout((seconds + 10) * 1000) });
  if (!res.ok) throw new Error(`nats-server profile: HTTP ${res.status}`);
  const raw = new Uint8Array(await res.arrayBuffer());
  // Go serves the profile gzipped.
  const profile = Profile.decode(raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw);
  const strings = profile.stringTable.strings;
  const fnName = new Map(profile.function.map((f) => [String(f.id), strings[Number(f.name)] ?? "?"]));
  const locFns = new Map(profile.location.map((l) => [String(l.id), l.line.map((ln) => fnName.get(String(ln.functionId)) ?? "?")]));
  // The sample value in nanoseconds of CPU: the type whose unit is nanoseconds (Go: samples/count, cpu/nanoseconds).
  const valueAt = Math.max(0, profile.sampleType.findIndex((t) => strings[Number(t.unit)] === "nanoseconds"));
  const flat = new Map<string, number>();
  const cumulative = new Map<string, number>();
  let total = 0;
  for (const s of profile.sample) {
    const ns = Number(s.value[valueAt] ?? 0);
    total += ns;
    // The first location is the leaf; its first line the innermost (inlined) function.
    const stack = s.locationId.flatMap((id) => locFns.get(String(id)) ?? []);
    if (stack[0]) flat.set(stack[0], (flat.get(stack[0]) ?? 0) + ns);
    for (const fn of new Set(stack)) cumulative.set(fn, (cumulative.get(fn) ?? 0) + ns);
  }
  const ms = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([f, ns]) => [f, Math.round(ns / 1e5) / 10] as [string, number]);
  return { seconds, totalMs: Math.round(total / 1e6), flat: ms(flat), cumulative: ms(cumulative) };
}
