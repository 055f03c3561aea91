/** `npm run nerve -- <command>`: operator commands against the running service. */
import { SingleBar, Presets } from "cli-progress";
import { AdminSubjects, type ReplayState } from "../api/index.js";
import { loadConfig } from "../config/index.js";
import { createLogger } from "../log/index.js";
import { connectNats } from "../nats/index.js";
import { adminRequest } from "./admin-client.js";

const USAGE = `usage: npm run nerve -- <command>
  replay <consumer>          rebuild a consumer's read model from the start of its streams, with progress
  lag                        pending and ack-pending of every consumer
  dead-letters [consumer]    list dead letters
  retry-dead-letter <id>     run a dead letter through its consumer again`;

async function main(argv: string[]): Promise<number> {
  const [cmd, arg] = argv;
  if (!cmd || cmd === "help" || cmd === "--help") {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const config = loadConfig();
  const nc = await connectNats({ url: config.NATS_URL, user: config.NATS_USER, password: config.NATS_PASSWORD, creds: config.NATS_CREDS, name: "nerve-cli" }, createLogger("warn"));
  try {
    switch (cmd) {
      case "replay": {
        if (!arg) throw new Error("replay needs a consumer name");
        await adminRequest(nc, AdminSubjects.Replay, { consumer: arg });
        const bar = new SingleBar({ format: `replay ${arg} [{bar}] {percentage}% | {value}/{total} events | {duration}s` }, Presets.shades_classic);
        bar.start(1, 0);
        for (;;) {
          const s = await adminRequest<ReplayState>(nc, AdminSubjects.ReplayStatus, { consumer: arg });
          bar.setTotal(Math.max(1, s.total));
          bar.update(s.done);
          if (!s.running) {
            bar.stop();
            if (s.error) throw new Error(`replay failed: ${s.error}`);
            console.log(`replayed ${s.total} events into ${arg}`);
            return 0;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      case "lag":
        console.table(await adminRequest(nc, AdminSubjects.Lag));
        return 0;
      case "dead-letters":
        console.log(JSON.stringify(await adminRequest(nc, AdminSubjects.DeadLetters, arg ? { consumer: arg } : {}), null, 2));
        return 0;
      case "retry-dead-letter":
        if (!arg) throw new Error("retry-dead-letter needs an id");
        console.log(await adminRequest(nc, AdminSubjects.RetryDeadLetter, { id: Number(arg) }));
        return 0;
      default:
        console.error(`unknown command ${cmd}\n${USAGE}`);
        return 2;
    }
  } finally {
    await nc.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error((err as Error).message);
    process.exit(1);
  },
);
