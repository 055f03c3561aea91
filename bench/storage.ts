/**
 * `npm run bench:storage [-- BATCH …]`: the storage floor alone (bench/storage-floor.ts: the write worker's
 * group commits of UpdateUserProfile-shaped writes, nothing else running), three rounds of 40,000 commands
 * at each batch size (default 128, about section 2's average batch), each round with the engine on its
 * thread and then on the main thread (`NERVE_SQLITE_WRITER=inline`: the difference is the hop's cost), for
 * trying a change to the SQLite path in a minute. Prints CPU per command (every thread of the process),
 * commits per second and the wall time of a commit; writes nothing to bench/results (`npm run
 * bench:commands` section 2d is the record).
 */
import { measureStorageFloor } from "./storage-floor.js";

const batches = process.argv.slice(2).map(Number).filter((n) => Number.isInteger(n) && n > 0);
for (const batch of batches.length > 0 ? batches : [128]) {
  for (let round = 1; round <= 3; round++) {
    for (const where of ["thread", "inline"] as const) {
      const r = await measureStorageFloor({ batch, commands: 40_000, where });
      const threads = Object.entries(r.threads).map(([name, us]) => `${name} ${us.toFixed(1)}`).join(", ");
      console.log(`batch ${batch}, round ${round}, ${where.padEnd(6)}: ${r.cpuUsPerCommand.toFixed(1)} µs of CPU per command (${threads}), ${Math.round(r.perSecond)} commands/s, ${r.commitMs.toFixed(2)} ms a commit`);
    }
  }
}
process.exit(0);
