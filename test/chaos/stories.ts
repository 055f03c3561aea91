/**
 * Keyed client stories for the chaos run: learners register, edit their profiles, buy courses, learn,
 * finish or get refunded; instructors edit courses. Every command is sent as a careful client sends it
 * (CONTRACT.md §8): on a timeout, no responders or `unavailable` it is sent again with the same
 * Idempotency-Key, so it takes effect once; every acknowledgement is recorded for the invariants.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Contexts, deriveAccessId } from "../../contracts/index.js";
import { command } from "../support/nerve.js";
import { seeded, type Random } from "./settings.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An acknowledged command: what the client was told. */
export interface Ack {
  context: keyof typeof Contexts;
  type: string;
  aggregateId: string;
  /** The command's body, as sent. */
  body: unknown;
  key: string;
  version: number;
  eventIds: string[];
  instance: string;
  /** From the first attempt to the acknowledgement, retries included (ms). */
  took: number;
}

/** How long a command is retried before the client gives up on it (a hand-off or a takeover lasts seconds). */
const GIVE_UP_MS = 90_000;

/** The policy of every course a story buys: refundable for 14 days, whatever the progress. */
export const STORY_POLICY = "pol-chaos";
/** The courses the stories buy, made before the faults start. */
export const STORY_COURSES = Array.from({ length: 8 }, (_, i) => `c-chaos-${i}`);

/** Sends commands with retries and keeps the score. */
export class CarefulClient {
  readonly acked: Ack[] = [];
  /** Keys given up on after {@link GIVE_UP_MS}: a failure of the run. */
  readonly gaveUp: string[] = [];
  /** Answers no retry can change (a refusal the story did not expect, `internal`): a failure of the run. */
  readonly wrong: string[] = [];
  /** Failed attempts by reason. */
  readonly failures = new Map<string, number>();
  retries = 0;

  constructor(private readonly nc: NatsConnection) {}

  /**
   * Sends a command until it is acknowledged; `notYet` lists refusals that a later attempt may not meet
   * (an access record its process manager has not granted yet): refusals are not stored under the key, so
   * the same key is sent again. Resolves with the acknowledgement, or undefined when given up or refused.
   */
  async send(context: Ack["context"], type: string, id: string, body: unknown, key: string, notYet: string[] = []): Promise<Ack | undefined> {
    const started = Date.now();
    for (;;) {
      let why: string;
      try {
        const r = await command(this.nc, context, type, id, body, { timeout: 3000, headers: { "Idempotency-Key": key } });
        if (r.body.ok) {
          const ack: Ack = { context, type, aggregateId: id, body, key, version: r.body.aggregate_version, eventIds: r.body.events.map((e: { event_id: string }) => e.event_id), instance: r.headers["Nerve-Instance"] ?? "", took: Date.now() - started };
          this.acked.push(ack);
          return ack;
        }
        const code = String(r.body.error?.code);
        if (code !== "unavailable" && !notYet.includes(code)) {
          this.wrong.push(`${type} ${id} (${key}): ${code} ${r.body.error?.message}`);
          return undefined;
        }
        why = code === "unavailable" ? "unavailable" : `not yet: ${code}`;
      } catch (err) {
        const e = err as Error;
        why = /no responders/i.test(e.message) ? "no responders" : e.name === "TimeoutError" || /timeout/i.test(e.message) ? "timeout" : e.message;
      }
      this.failures.set(why, (this.failures.get(why) ?? 0) + 1);
      this.retries++;
      if (Date.now() - started > GIVE_UP_MS) {
        this.gaveUp.push(`${type} ${id} (${key}), last: ${why}`);
        return undefined;
      }
      await sleep(why.startsWith("not yet") ? 500 : 150);
    }
  }
}

/** The policy and the courses the stories buy; run before the faults. */
export async function setUpCatalog(client: CarefulClient): Promise<void> {
  await client.send("policies", "CreatePolicy", STORY_POLICY, { name: "Chaos 14 days", type: "standard", refund_period_days: 14 }, `setup-${STORY_POLICY}`);
  for (const id of STORY_COURSES) {
    await client.send("courses", "CreateCourse", id, { title: `Course ${id}`, instructor_id: "i-chaos", policy_id: STORY_POLICY, description: "chaos", price: { amount: 1000, currency: "EUR" } }, `setup-${id}`);
  }
}

/**
 * One learner's story, `n` its number: registers, edits the profile, orders one or two courses, then
 * cancels — or pays, learns, and finishes the first course or gets a refund. Choices come from `rng`.
 */
export async function learnerStory(client: CarefulClient, rng: Random, tag: string, n: number): Promise<void> {
  const user = `u-${tag}-${n}`;
  const order = `o-${tag}-${n}`;
  if (!(await client.send("users", "RegisterUser", user, { email: `${user}@example.com`, name: `Learner ${n}` }, `reg-${user}`))) return;
  if (!(await client.send("users", "UpdateUserProfile", user, { profile_data: { bio: `bio ${n}` } }, `bio-${user}`))) return;
  const first = rng.int(0, STORY_COURSES.length - 1);
  const courses = rng.next() < 0.5 ? [STORY_COURSES[first]!] : [STORY_COURSES[first]!, STORY_COURSES[(first + 1) % STORY_COURSES.length]!];
  if (!(await client.send("orders", "PlaceOrder", order, { user_id: user, course_ids: courses }, `place-${order}`))) return;
  if (rng.next() < 0.15) {
    await client.send("orders", "CancelOrder", order, {}, `cancel-${order}`);
    return;
  }
  if (!(await client.send("orders", "MarkOrderPaid", order, { payment_id: `pay-${order}` }, `pay-${order}`))) return;
  const access = deriveAccessId(user, courses[0]!);
  // The grant comes from the access-grants process manager, whichever instance runs it, after the payment.
  if (!(await client.send("access", "UpdateProgress", access, { progress: 30 }, `p30-${access}`, ["not_found"]))) return;
  if (rng.next() < 0.4) await client.send("orders", "RefundOrder", order, { refund_reason: "chaos refund" }, `refund-${order}`);
  else await client.send("access", "UpdateProgress", access, { progress: 100 }, `p100-${access}`);
  if (rng.next() < 0.3) await client.send("users", "ChangeUserEmail", user, { new_email: `${user}.new@example.com` }, `mail-${user}`);
}

/** An instructor's edit: a new title for one of the courses (catalog and search follow it). */
export async function courseEdit(client: CarefulClient, rng: Random, n: number): Promise<void> {
  const course = rng.pick(STORY_COURSES);
  await client.send("courses", "UpdateCourse", course, { title: `Course ${course} edition ${n}` }, `edit-${course}-${n}`);
}

/**
 * Runs stories on `workers` loops until stopped: mostly learners, now and then a course edit. Story `n`
 * draws its choices from `seed` and `n` alone, so a seed gives the same stories whatever their timing.
 */
export function storyLoad(client: CarefulClient, seed: number, tag: string, workers: number) {
  let stopped = false;
  let n = 0;
  let stories = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const i = n++;
      const rng = seeded((seed + Math.imul(i + 1, 0x9e3779b1)) >>> 0);
      if (i % 10 === 9) await courseEdit(client, rng, i);
      else await learnerStory(client, rng, tag, i);
      stories++;
    }
  };
  const loops = Array.from({ length: workers }, loop);
  return {
    /** Stories finished (acknowledged, refused or given up). */
    get stories() {
      return stories;
    },
    /** Lets each loop finish its story in progress, then resolves. */
    async stop(): Promise<void> {
      stopped = true;
      await Promise.all(loops);
    },
  };
}
