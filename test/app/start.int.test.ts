import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { startNerve } from "../../src/app/index.js";
import { loadConfig } from "../../src/config/index.js";
import { METRICS_REUSE_MS } from "../../src/gateway/metrics.js";
import { createLogger } from "../../src/log/index.js";
import { connect } from "@nats-io/transport-node";
import { command, freePort, query, startNatsServer, tempSqlitePath, until, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  await nats?.stop();
});

async function connections(): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${nats.httpPort}/connz`);
  return ((await r.json()) as { num_connections: number }).num_connections;
}

describe("start-up", () => {
  it("serves the gateway on NERVE_HTTP_PORT beside the NATS API", async () => {
    const db = await tempSqlitePath();
    const port = await freePort();
    const nerve = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: String(port) }), createLogger("silent"));
    try {
      expect(nerve.gateway.port).toBe(port);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      await nerve.bus.execute({ context: "users", type: "RegisterUser", aggregateId: "m1", body: { email: "m1@example.com", name: "M" } });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^nerve_actors_live \d+/m);
      expect(metrics).toMatch(/^nerve_group_commit_writes_total [1-9]/m);
      // The relay's acks are deleted by the writer; the registration's event is published by now or soon.
      expect(await nerve.relay.flush(5_000)).toBe(true);
      await new Promise((r) => setTimeout(r, METRICS_REUSE_MS + 100)); // the text above is served again for a second
      const after = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(after).toMatch(/^nerve_outbox_rows_deleted_total [1-9]/m);
      expect(after).toMatch(/^nerve_outbox_backlog 0$/m);
      expect(after).toMatch(/^nerve_group_commit_admission_waits_total \d+$/m);
      expect(after).toMatch(/^nerve_group_commit_admission_wait_seconds_total [\d.e-]+$/m);
      // Where a command's time went, by stage; the registration wrote, so it has a commit stage.
      expect(after).toMatch(/^nerve_command_stage_seconds_count\{stage="mailbox"\} [1-9]/m);
      expect(after).toMatch(/^nerve_command_stage_seconds_count\{stage="commit"\} [1-9]/m);
      // The WAL is checkpointed beside the writers, every second, and none failed.
      let checkpoints = "";
      await until("a WAL checkpoint ran", async () => /^nerve_sqlite_checkpoints_total\{mode="passive"\} [1-9]/m.test((checkpoints = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())), 5_000);
      expect(checkpoints).toMatch(/^nerve_sqlite_checkpoint_failures_total 0$/m);
      expect(checkpoints).toMatch(/^nerve_sqlite_checkpoint_restarts_blocked_total 0$/m);
      expect(checkpoints).toMatch(/^nerve_sqlite_wal_frames\{state="total"\} \d+$/m);
      // The dead letters' gauge is read as a query: earlier scrapes ran some on the query thread, one thread, none failed.
      expect(checkpoints).toMatch(/^nerve_sqlite_queries_total\{outcome="ok"\} [1-9]/m);
      expect(checkpoints).toMatch(/^nerve_sqlite_queries_total\{outcome="failed"\} 0$/m);
      expect(checkpoints).toMatch(/^nerve_sqlite_query_thread_starts_total 1$/m);
      expect(checkpoints).toMatch(/^nerve_sqlite_query_thread_collections_total 0$/m);
      // That thread's own heap, small: a young generation of its own size (worker-heap.ts), a few statements' rows.
      const queryHeap = Number(/^nerve_sqlite_query_thread_heap_bytes\{state="total",space="all"\} (\d+)$/m.exec(checkpoints)?.[1]);
      expect(queryHeap).toBeGreaterThan(1 << 20);
      expect(queryHeap).toBeLessThan(128 << 20);
      expect(metrics).toMatch(/^nerve_consumer_pending\{consumer="notifications",stream="EVENTS_USERS"\} \d+/m);
      expect(metrics).toMatch(/^nerve_consumer_dead_letters\{consumer="catalog"\} 0/m);
      expect(metrics).toContain("nerve_gateway_connections");
    } finally {
      await nerve.stop();
      await db.cleanup();
    }
  });

  it("exports latency histograms of replies, group commits, relay acks and consumers", async () => {
    const db = await tempSqlitePath();
    const nerve = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0" }), createLogger("silent"));
    const client = await connect({ servers: nats.url, noAsyncTraces: true });
    try {
      expect((await command(client, "users", "RegisterUser", "h1", { email: "h1@example.com", name: "H" })).body.ok).toBe(true);
      expect((await command(client, "users", "RegisterUser", "h1", { email: "h2@example.com", name: "H" })).body.error.code).toBe("conflict");
      expect((await query(client, "users", "GetUser", { user_id: "h1" })).body.ok).toBe(true);
      const scrape = async () => (await fetch(`http://127.0.0.1:${nerve.gateway.port}/metrics`)).text();
      // notifications handles UserRegistered once the relay has published it.
      await until("a consumer handled the event", async () => /^nerve_consumer_handle_seconds_count\{consumer="notifications"\} [1-9]/m.test(await scrape()), 10_000);
      const metrics = await scrape();
      for (const series of [
        'nerve_command_reply_seconds_count{context="users",command="RegisterUser",result="ok"}',
        'nerve_command_reply_seconds_count{context="users",command="RegisterUser",result="conflict"}',
        'nerve_query_reply_seconds_count{context="users",query="GetUser",result="ok"}',
        "nerve_group_commit_seconds_count",
        "nerve_group_commit_batch_size_count",
        'nerve_sqlite_write_seconds_count{phase="wait"}',
        'nerve_sqlite_write_seconds_count{phase="run"}',
        'nerve_sqlite_write_seconds_count{phase="answer"}',
        "nerve_relay_publish_ack_seconds_count",
      ]) {
        expect(metrics, series).toMatch(new RegExp(`^${series.replace(/[{}]/g, "\\$&")} [1-9]`, "m"));
      }
      // Millisecond buckets, and a batch of one write in the batch-size histogram's first bucket.
      expect(metrics).toMatch(/^nerve_group_commit_seconds_bucket\{le="0\.0005"\} \d+$/m);
      expect(metrics).toMatch(/^nerve_group_commit_batch_size_bucket\{le="1"\} [1-9]/m);
    } finally {
      await client.close();
      await nerve.stop();
      await db.cleanup();
    }
  });

  // `auto` (the default) picks one of the two by the machine's cores (inline on CI's two): each is run here whatever the machine.
  const engines = [
    { writer: "inline", where: "on the main thread", heap: "no write worker's heap" },
    { writer: "worker", where: "in the write worker's thread", heap: "the write worker's heap on its own" },
  ] as const;
  for (const { writer, where, heap } of engines) it(`commits with NERVE_SQLITE_WRITER=${writer} (${where}): commands and a write-only projection's batches, ${heap}`, async () => {
    const db = await tempSqlitePath();
    const nerve = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: "0", NERVE_SQLITE_WRITER: writer }), createLogger("silent"));
    const client = await connect({ servers: nats.url, noAsyncTraces: true });
    try {
      expect((await command(client, "users", "RegisterUser", "in1", { email: "in1@example.com", name: "In" })).body.ok).toBe(true);
      expect((await command(client, "users", "ChangeUserEmail", "in1", { new_email: "in2@example.com" })).body).toMatchObject({ ok: true, aggregate_version: 2 });
      expect((await query(client, "users", "GetUser", { user_id: "in1" })).body.result).toMatchObject({ email: "in2@example.com" });
      expect(await nerve.relay.flush(5_000)).toBe(true);
      // security, a write-only projection, takes UserEmailChanged through the same engine (its inbox row).
      await until("security handled the e-mail change", async () => Number((await nerve.db.execute<{ n: number }>("select count(*) as n from consumer_inbox where consumer = ?", ["security"], "get")).n) === 1, 10_000);
      const metrics = await (await fetch(`http://127.0.0.1:${nerve.gateway.port}/metrics`)).text();
      expect(metrics).toMatch(/^nerve_sqlite_write_seconds_count\{phase="run"\} [1-9]/m);
      expect(nerve.writer.sqliteWorker?.where).toBe(writer === "inline" ? "inline" : "thread");
      // Inline, no thread of its own: the engine's heap is the main thread's, not told apart.
      if (writer === "inline") expect(metrics).not.toContain("nerve_sqlite_writer_heap_bytes{");
      else expect(metrics).toMatch(/^nerve_sqlite_writer_heap_bytes\{state="total",space="all"\} [1-9]/m);
      expect(nerve.writer.sqliteWorker?.restarts).toBe(0);
    } finally {
      await client.close();
      await nerve.stop();
      await db.cleanup();
    }
  });

  it("fails cleanly when the HTTP port is taken: nothing is left running", async () => {
    const blocker = createServer().listen(0, "0.0.0.0");
    await new Promise((r) => blocker.once("listening", r));
    const port = (blocker.address() as { port: number }).port;
    const db = await tempSqlitePath();
    onTestFinished(async () => {
      blocker.close();
      await db.cleanup();
    });
    const before = await connections();
    // A start that wrongly succeeds is stopped at once, not left holding the server's durables.
    const err = await startNerve(loadConfig({ NATS_URL: nats.url, NERVE_DB: `sqlite:${db.path}`, NERVE_HTTP_PORT: String(port) }), createLogger("silent")).then(
      (nerve) => nerve.stop(),
      (e) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(String(err.message)).toMatch(new RegExp(String(port)));
    // The service's NATS connection is gone again.
    await expect.poll(connections, { timeout: 5000 }).toBe(before);
  });
});
