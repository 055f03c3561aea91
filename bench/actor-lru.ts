/**
 * `npm run bench:actor-lru`: what an activation costs the actor system once its cap is reached, when
 * every activation must make room by passivating the least recently used idle actor. In-process, a
 * loader that answers at once, uniform random ids over 2.5 × the cap (the soak's shape: more
 * aggregates touched than fit), so about 60 % of the uses activate.
 */
import { ActorSystem } from "../src/runtime/index.js";

const cap = Number(process.env.BENCH_ACTORS ?? 100_000);
const ids = Math.floor(cap * 2.5);
const uses = Number(process.env.BENCH_USES ?? 600_000);
const system = new ActorSystem({ load: async () => ({ state: null, version: 0 }) as never, mailboxSize: 64, maxActors: cap, idleMs: 3_600_000 });
let seed = 1;
const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % ids);
// Fill to the cap first; time the churn after.
for (let i = 0; i < cap; i++) await system.read("User", `u-${i}`, () => 0);
const before = system.stats.activations;
const t0 = process.cpuUsage();
const w0 = performance.now();
for (let i = 0; i < uses; i++) await system.read("User", `u-${next()}`, () => 0);
const cpu = process.cpuUsage(t0);
const cpuMs = (cpu.user + cpu.system) / 1000;
const wallMs = performance.now() - w0;
const activations = system.stats.activations - before;
console.log(
  `cap ${cap.toLocaleString()}, ${uses.toLocaleString()} uses over ${ids.toLocaleString()} ids: ${activations.toLocaleString()} activations, ` +
    `${((wallMs * 1000) / uses).toFixed(2)} µs per use (CPU ${((cpuMs * 1000) / uses).toFixed(2)}), live ${system.size.toLocaleString()}`,
);
system.close();
