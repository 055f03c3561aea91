/**
 * The NATS service's endpoints stop all together when one of their subscriptions ends (what
 * @nats-io/services does on a subscription's error, e.g. a permissions violation after a server's
 * configuration reload): the instance says so in its log and /readyz answers 503 with `api: false`,
 * instead of answering nothing while reporting itself ready.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { captureLog, startTestNerve, until, type CapturedLog, type TestNerve } from "../support/index.js";

let t: TestNerve;
let log: CapturedLog;
beforeAll(async () => {
  log = captureLog("warn");
  t = await startTestNerve({}, { logger: log.logger });
});
afterAll(async () => {
  await t?.close();
});

const readyz = async () => {
  const r = await fetch(`http://127.0.0.1:${t.nerve.gateway.port}/readyz`);
  return { status: r.status, body: (await r.json()) as { ready: boolean; api: boolean } };
};

describe("the API service stopping on its own", () => {
  it("is logged and makes /readyz answer 503 with api: false", async () => {
    expect(await readyz()).toMatchObject({ status: 200, body: { ready: true, api: true } });
    // One endpoint's subscription ends under the service, as a permissions violation would end it.
    const handlers = (t.nerve.api!.service as unknown as { handlers: { sub: { unsubscribe(): void } }[] }).handlers;
    handlers[0]!.sub.unsubscribe();
    await until("the service stopped", () => !t.nerve.api!.serving());
    // /readyz's answer is kept for a second: the next one says it.
    await vi.waitFor(async () => expect(await readyz()).toMatchObject({ status: 503, body: { ready: false, api: false } }), { timeout: 5_000, interval: 200 });
    expect(log.errors().map((l) => l.msg)).toContain("the NATS service stopped on its own: commands and queries go unanswered until this instance restarts");
  });
});
