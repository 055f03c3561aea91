/**
 * The consumer figures of /metrics when a read fails: a durable whose info cannot be read keeps its lag
 * series' last values, is counted in nerve_consumer_lag_read_failures_total, and leaves the other
 * consumers' lag fresh; a dead-letter count that fails keeps the last counts (not 0, which would resolve
 * NerveDeadLetters until the next good count fired it again).
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Consumers } from "../../contracts/index.js";
import { startTestNerve, until, type TestNerve } from "../support/index.js";
import { caughtUp, ok } from "../e2e/story.js";

let t: TestNerve;
beforeAll(async () => {
  t = await startTestNerve();
  await ok(t, "users", "RegisterUser", "u-first", { email: "first@example.com", name: "First" });
  await caughtUp(t);
});
afterAll(async () => {
  await t?.close();
});

/** The value of the series `name{labels}` (labels in the order /metrics writes them) in a fresh scrape; undefined when absent. */
async function scraped(name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe("consumer figures when their reads fail", () => {
  const failing = Consumers.Catalog; // its durable is deleted: its info cannot be read
  const behind = Consumers.Notifications; // stopped: its lag on EVENTS_USERS grows
  const failingLag = `consumer="${failing}",stream="EVENTS_COURSES"`;
  const behindLag = `consumer="${behind}",stream="EVENTS_USERS"`;

  it("keeps a failed durable's lag and the dead-letter counts, counts the failed reads, and keeps the other lags fresh", async () => {
    await t.nerve.consumers.deadLetters.add({ consumer: failing, stream: "EVENTS_COURSES", stream_seq: 1, event_id: null, event_type: "CourseCreated", envelope: null, reason: "poison", attempts: 5 });
    await until("the dead letter and every lag are on /metrics", async () => (await scraped("nerve_consumer_dead_letters", `consumer="${failing}"`)) === 1 && (await scraped("nerve_consumer_pending", failingLag)) === 0 && (await scraped("nerve_consumer_pending", behindLag)) === 0, 10_000, 200);
    expect(await scraped("nerve_consumer_lag_read_failures_total", failingLag)).toBeUndefined();

    await t.nerve.consumers.runners.get(failing)!.stop();
    await (await jetstreamManager(t.client)).consumers.delete("EVENTS_COURSES", failing);
    await t.nerve.consumers.runners.get(behind)!.stop();
    // The dead letters' table away: every count of them fails.
    await t.nerve.db.execute("alter table consumer_dead_letters rename to consumer_dead_letters_away", [], "run");
    await expect(t.nerve.consumers.deadLetters.countByConsumer()).rejects.toThrow(/consumer_dead_letters/);

    await ok(t, "users", "RegisterUser", "u-second", { email: "second@example.com", name: "Second" });
    await until("the stopped consumer's lag shows its new event", async () => (await scraped("nerve_consumer_pending", behindLag)) === 1, 10_000, 200);
    expect(await scraped("nerve_consumer_lag_read_failures_total", failingLag)).toBeGreaterThanOrEqual(1);
    expect(await scraped("nerve_consumer_pending", failingLag)).toBe(0);
    expect(await scraped("nerve_consumer_ack_pending", failingLag)).toBe(0);
    expect(await scraped("nerve_consumer_dead_letters", `consumer="${failing}"`)).toBe(1);
    expect(await scraped("nerve_consumer_dead_letters", `consumer="${behind}"`)).toBe(0);

    await t.nerve.db.execute("alter table consumer_dead_letters_away rename to consumer_dead_letters", [], "run");
  });
});
