/** Fills EVENTS_COURSES with contract-valid course events, as the outbox relay would publish them. */
import { jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { v7 as uuidv7 } from "uuid";
import { ContentTypes, Contexts, EventSchemas, Headers, Streams, encodeMsgPack, eventSubject, type EventEnvelope } from "../contracts/index.js";
import { streamConfig } from "../src/nats/index.js";
import { runWindowed } from "./window.js";

/** The stream the consumer bench reads. */
export const COURSE_STREAM = Contexts.courses.stream;

/** What seeding the stream took. */
export interface SeedResult {
  events: number;
  courses: number;
  seconds: number;
  perSecond: number;
  bytesPerEvent: number;
}

// A description of a realistic size: the search projection indexes it.
const DESCRIPTION = "A practical course on event-driven systems: actors, outboxes, JetStream consumers and read models, with exercises. ".repeat(2).trim();

/** The course id of course `i`. */
const courseId = (i: number): string => `crs_${String(i).padStart(7, "0")}`;

/**
 * The `i`-th of `events` envelopes: the first half creates one course each, the second half updates
 * them in the same order (aggregate_version 2), so every update finds its row.
 */
export function courseEvent(i: number, events: number): EventEnvelope<"CourseCreated" | "CourseUpdated"> {
  const half = Math.ceil(events / 2);
  const course = i < half ? i : i - half;
  const id = courseId(course);
  const base = {
    event_id: uuidv7(),
    event_version: 1 as const,
    occurred_on: new Date().toISOString(),
    aggregate_type: "Course" as const,
    aggregate_id: id,
    correlation_id: `bench-${course}`,
    causation_id: null,
  };
  if (i < half) {
    return { ...base, event_type: "CourseCreated", aggregate_version: 1, payload: { course_id: id, title: `Course ${course}`, instructor_id: "usr_bench", policy_id: "pol_standard" } };
  }
  const price = course % 5 === 0 ? null : { amount: 1900 + (course % 100) * 100, currency: "EUR" };
  return { ...base, event_type: "CourseUpdated", aggregate_version: 2, payload: { course_id: id, title: `Event-driven course ${course}`, description: DESCRIPTION, price } };
}

/**
 * Creates EVENTS_COURSES as the service does (file storage, `events.courses.>`) and publishes `events`
 * envelopes with the contract's headers, at most `window` publish acks outstanding.
 */
export async function seedCourseEvents(nc: NatsConnection, js: JetStreamClient, o: { events: number; window: number; deadline: number }): Promise<SeedResult> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add(streamConfig(COURSE_STREAM, Streams[COURSE_STREAM].subjects));
  // The generator and the contract must agree, or the consumers would dead-letter everything.
  for (const i of [0, o.events - 1]) {
    const e = courseEvent(i, o.events);
    const parsed = EventSchemas[e.event_type].safeParse(e);
    if (!parsed.success) throw new Error(`bench event ${e.event_type} breaks the contract: ${parsed.error.message}`);
  }
  let bytes = 0;
  const run = await runWindowed(
    o.events,
    o.window,
    async (i) => {
      const e = courseEvent(i, o.events);
      const body = encodeMsgPack(e);
      bytes += body.length;
      const h = natsHeaders();
      h.set(Headers.ContentType, ContentTypes.MsgPack);
      h.set(Headers.EventType, e.event_type);
      h.set(Headers.EventVersion, String(e.event_version));
      await js.publish(eventSubject("courses", e.event_type, e.aggregate_id), body, { msgID: e.event_id, headers: h });
    },
    o.deadline,
  );
  if (run.cutShort) throw new Error(`seeding stopped at its deadline after ${run.done} of ${o.events} events`);
  const stored = (await jsm.streams.info(COURSE_STREAM)).state.messages;
  if (stored !== o.events) throw new Error(`EVENTS_COURSES holds ${stored} events, expected ${o.events}`);
  const seconds = run.ms / 1000;
  return { events: o.events, courses: Math.ceil(o.events / 2), seconds, perSecond: o.events / seconds, bytesPerEvent: bytes / o.events };
}
