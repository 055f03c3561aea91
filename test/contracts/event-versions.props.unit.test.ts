/**
 * Event versions on the wire (CONTRACT.md §2 "Versions"): CourseAccessGranted is emitted as version 2
 * (`order_id` added); version-1 bytes still decode and upcast to `order_id: null`; a reader that knows
 * only version 1 (plain MessagePack, the version-1 schema ignoring unknown keys) still reads version 2.
 */
import fc from "fast-check";
import { Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  CourseAccessGrantedV1,
  EnvelopeBase,
  EventSchemas,
  EventVersions,
  OlderEventSchemas,
  decodeMsgPack,
  encodeMsgPack,
  upcasters,
} from "../../contracts/index.js";
import { courseAccessGrantedV1, validEnvelope } from "../support/arbitraries.js";
import { assertProperty, fuzzSummary } from "../support/fuzz.js";
import { theirRead } from "../support/their-msgpack.js";

fuzzSummary(import.meta.url);

/** A CourseAccessGranted as the version-1 code encoded it (committed bytes: the old encoder's exact output). */
const V1_BYTES = Buffer.from(
  "iqhldmVudF9pZNkkMDE5MmYwYzUtN2IxZS03YzNhLThmMmQtMWEyYjNjNGQ1ZTZmqmV2ZW50X3R5cGWzQ291cnNlQWNjZXNzR3JhbnRlZK1ldmVudF92ZXJzaW9uAatvY2N1cnJlZF9vbrgyMDI2LTAzLTAxVDA5OjAwOjAwLjAwMFquYWdncmVnYXRlX3R5cGWsQWNjZXNzUmVjb3JkrGFnZ3JlZ2F0ZV9pZNkkYWNjX2JjN2IxZjViNzQ0YTcxMzg4M2YyNzlmN2M5YTBmYzU1sWFnZ3JlZ2F0ZV92ZXJzaW9uAa5jb3JyZWxhdGlvbl9pZKpjaGVja291dC0xrGNhdXNhdGlvbl9pZNkkMDE5MmYwYzUtN2IxZS03YzNhLThmMmQtMDAwMDAwMDAwMDAxp3BheWxvYWSEqWFjY2Vzc19pZNkkYWNjX2JjN2IxZjViNzQ0YTcxMzg4M2YyNzlmN2M5YTBmYzU1p3VzZXJfaWSldS1hZGGpY291cnNlX2lkpGMtdHOqZXhwaXJlc19hdMA=",
  "base64",
);
const ACCESS_ID = "acc_bc7b1f5b744a713883f279f7c9a0fc55";
const V1_ENVELOPE = {
  event_id: "0192f0c5-7b1e-7c3a-8f2d-1a2b3c4d5e6f",
  event_type: "CourseAccessGranted",
  event_version: 1,
  occurred_on: "2026-03-01T09:00:00.000Z",
  aggregate_type: "AccessRecord",
  aggregate_id: ACCESS_ID,
  aggregate_version: 1,
  correlation_id: "checkout-1",
  causation_id: "0192f0c5-7b1e-7c3a-8f2d-000000000001",
  payload: { access_id: ACCESS_ID, user_id: "u-ada", course_id: "c-ts", expires_at: null },
};

/** Decodes and upcasts as every reader of Nerve does: envelope first, then the upcaster chain, then the type's schema. */
function readAsNerve(bytes: Uint8Array) {
  const decoded = decodeMsgPack(bytes);
  if (!decoded.ok) throw decoded.error;
  return EventSchemas.CourseAccessGranted.parse(upcasters.upcast(EnvelopeBase.parse(decoded.value)));
}

// A subscriber written against version 1 only: any map decoder, the version-1 schema without its
// strictness (unknown keys ignored), and any event_version (it dispatches on the event type).
const v1Reader = z.object({ ...OlderEventSchemas.CourseAccessGranted[1].shape, event_version: z.number().int().min(1), payload: z.object(CourseAccessGrantedV1.shape) });
const plainMsgpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

describe("CourseAccessGranted version 1 (what the streams and event logs written before hold)", () => {
  it("the old encoder's bytes are what encodeMsgPack still writes for the same envelope (the wire format is unchanged)", () => {
    expect(Buffer.from(encodeMsgPack(V1_ENVELOPE)).equals(V1_BYTES)).toBe(true);
  });

  it("decodes, passes the version-1 schema, fails the current one, and upcasts to order_id null", () => {
    const decoded = decodeMsgPack(V1_BYTES);
    expect(decoded).toStrictEqual({ ok: true, value: V1_ENVELOPE });
    expect(OlderEventSchemas.CourseAccessGranted[1].safeParse(V1_ENVELOPE).success).toBe(true);
    expect(EventSchemas.CourseAccessGranted.safeParse(V1_ENVELOPE).success).toBe(false);
    expect(readAsNerve(V1_BYTES)).toStrictEqual({ ...V1_ENVELOPE, event_version: 2, payload: { ...V1_ENVELOPE.payload, order_id: null } });
  });

  it("is upcast from a copy: the decoded version-1 envelope is left as it was", () => {
    const v1 = structuredClone(V1_ENVELOPE);
    upcasters.upcast(v1);
    expect(v1).toStrictEqual(V1_ENVELOPE);
  });

  it("any version-1 envelope survives MessagePack and upcasts to the current schema with order_id null", () => {
    assertProperty(
      fc.property(courseAccessGrantedV1(), ({ v1, upcast }) => {
        const bytes = encodeMsgPack(v1);
        expect(OlderEventSchemas.CourseAccessGranted[1].parse(theirRead(bytes))).toStrictEqual(v1);
        expect(readAsNerve(bytes)).toStrictEqual(upcast);
      }),
      100,
    );
  });
});

describe("CourseAccessGranted version 2 (what Nerve emits now)", () => {
  it("is the current version; every other event type stays at version 1", () => {
    expect(EventVersions.CourseAccessGranted).toBe(2);
    expect(Object.entries(EventVersions).filter(([, v]) => v !== 1)).toEqual([["CourseAccessGranted", 2]]);
  });

  it("round-trips through MessagePack unchanged and passes the upcasters untouched", () => {
    assertProperty(
      fc.property(validEnvelope("CourseAccessGranted"), (v2) => {
        const bytes = encodeMsgPack(v2);
        expect(readAsNerve(bytes)).toStrictEqual(v2);
        expect(upcasters.upcast(v2)).toStrictEqual(v2);
      }),
      100,
    );
  });

  it("is read by a version-1 reader (plain MessagePack, no knowledge of order_id): every version-1 field as written", () => {
    assertProperty(
      fc.property(validEnvelope("CourseAccessGranted"), (v2) => {
        const bytes = encodeMsgPack(v2);
        const { order_id: _unknownToIt, ...v1Payload } = v2.payload;
        for (const decoded of [theirRead(bytes), plainMsgpackr.unpack(bytes)]) {
          expect(v1Reader.parse(decoded)).toStrictEqual({ ...v2, payload: v1Payload });
        }
        // The strict version-1 schema objects to exactly one thing: the added key.
        const strict = CourseAccessGrantedV1.safeParse((theirRead(bytes) as { payload: unknown }).payload);
        expect(strict.error?.issues.map((i) => [i.code, (i as { keys?: string[] }).keys])).toEqual([["unrecognized_keys", ["order_id"]]]);
      }),
      100,
    );
  });
});
