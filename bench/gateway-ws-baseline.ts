/**
 * The comparison for the gateway bench: a plain `ws` server doing the same delivery — JWT check
 * before the upgrade, an ordered consumer on EVENTS_ACCESS, the same decoding and validation, one
 * JSON frame per event to every socket of its learner. What it leaves out (resume buffers, flush
 * window, backpressure closes, client commands) only makes it lighter.
 */
import { createServer } from "node:http";
import { DeliverPolicy, jetstream, type ConsumerMessages } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { WebSocketServer, type WebSocket } from "ws";
import { EnvelopeBase, EventSchemas, currentEventVersion, decodeMsgPack, upcasters } from "../contracts/index.js";
import { TokenVerifier, encodeCursor, tokenOf } from "../src/gateway/index.js";

const LEARNER_TYPES = new Set(["CourseAccessGranted", "AccessRevoked", "AccessExpired", "ProgressUpdated", "CourseCompleted"]);

/** Starts the baseline on `port` (0 = any); resolves with the real port. */
export async function startWsBaseline(deps: { nc: NatsConnection; port: number; jwtSecret: string }): Promise<{ port: number; stop(): Promise<void> }> {
  const tokens = new TokenVerifier(deps.jwtSecret);
  const byUser = new Map<string, Set<WebSocket>>();
  let head = 0;
  const server = createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on("upgrade", (req, socket, upgradeHead) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    tokens.verify(tokenOf(url.searchParams.get("token") ?? undefined, req.headers.authorization)).then(
      (id) =>
        wss.handleUpgrade(req, socket, upgradeHead, (ws) => {
          let set = byUser.get(id.userId);
          if (!set) byUser.set(id.userId, (set = new Set()));
          set.add(ws);
          ws.on("close", () => {
            set.delete(ws);
            if (set.size === 0) byUser.delete(id.userId);
          });
          ws.send(JSON.stringify({ type: "welcome", user_id: id.userId, cursor: encodeCursor(head), progress: [] }));
        }),
      () => socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n"),
    );
  });
  const consumer = await jetstream(deps.nc).consumers.get("EVENTS_ACCESS", { deliver_policy: DeliverPolicy.New });
  const messages: ConsumerMessages = await consumer.consume({
    max_messages: 1024,
    callback: (m) => {
      head = m.seq;
      const type = m.headers?.get("Event-Type") ?? "";
      if (!LEARNER_TYPES.has(type)) return;
      const decoded = decodeMsgPack(m.data);
      if (!decoded.ok) return;
      let envelope = decoded.value as { event_version?: unknown };
      if (typeof envelope?.event_version === "number" && envelope.event_version < currentEventVersion(type)) {
        const base = EnvelopeBase.safeParse(envelope);
        if (!base.success) return;
        envelope = upcasters.upcast(base.data);
      }
      const parsed = EventSchemas[type as "ProgressUpdated"].safeParse(envelope);
      if (!parsed.success) return;
      const sockets = byUser.get(parsed.data.payload.user_id);
      if (!sockets) return;
      const frame = JSON.stringify({ type: "event", cursor: encodeCursor(m.seq), event: parsed.data });
      for (const ws of sockets) ws.send(frame);
    },
  });
  const port = await new Promise<number>((resolve) => server.listen(deps.port, "127.0.0.1", () => resolve((server.address() as { port: number }).port)));
  return {
    port,
    async stop() {
      await messages.close();
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => server.close(r));
    },
  };
}
