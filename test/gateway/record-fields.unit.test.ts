import { describe, expect, it } from "vitest";
import { deriveAccessId } from "../../contracts/index.js";
import { EventLog, type AccessRecordView } from "../../src/gateway/index.js";
import { RecordField, mergeRecord } from "../../src/gateway/record-fields.js";

const id = (user: string) => deriveAccessId(user, "c");

function add(log: EventLog, seq: number, user: string, type: string, version: number, extra: Record<string, unknown> = {}): void {
  const payload = { access_id: id(user), user_id: user, course_id: "c", ...extra };
  log.append({ seq, at: Date.now(), userId: user, accessId: id(user), version }, `frame ${seq}`, { event_type: type, payload, aggregate_version: version } as never);
}

const record = (fields: Partial<AccessRecordView>): AccessRecordView => ({ access_id: id("a"), user_id: "a", course_id: "c", status: "active", progress: 0, completed: false, expires_at: null, order_id: null, version: 1, ...fields });

describe("a record's known fields", () => {
  it("are all of a record folded from its grant; of one begun from a placeholder, those its events set, until it has them all", () => {
    const log = new EventLog({ minAgeMs: 3600_000, minEvents: 100, maxEvents: 100 });
    add(log, 1, "a", "CourseAccessGranted", 1, { expires_at: null, order_id: null });
    add(log, 2, "a", "ProgressUpdated", 2, { progress: 5 });
    expect(log.knownFields("a", id("a"))).toBeUndefined();
    // b's grant and first events are older than what the log read.
    add(log, 3, "b", "ProgressUpdated", 7, { progress: 40 });
    expect(log.knownFields("b", id("b"))).toBe(RecordField.progress);
    add(log, 4, "b", "CourseAccessGranted", 8, { expires_at: "2100-01-01T00:00:00.000Z", order_id: null });
    expect(log.knownFields("b", id("b"))).toBe(RecordField.progress | RecordField.status | RecordField.expires_at | RecordField.order_id);
    add(log, 5, "b", "CourseCompleted", 9);
    expect(log.knownFields("b", id("b"))).toBeUndefined();
  });
});

describe("the welcome's merge", () => {
  const query = record({ progress: 100, completed: true, expires_at: "2099-01-01T00:00:00.000Z", order_id: "o1", version: 5 });

  it("keeps a complete view at an equal or newer version, takes the query's newer record", () => {
    const mine = record({ progress: 30, version: 5 });
    expect(mergeRecord(mine, undefined, query)).toBe(mine);
    expect(mergeRecord(record({ version: 4 }), undefined, query)).toBe(query);
    expect(mergeRecord(undefined, undefined, query)).toBe(query);
  });

  it("gives a partial view up to the query at an equal version; a newer one lays only the fields its events set on the query's", () => {
    expect(mergeRecord(record({ progress: 100, version: 5 }), RecordField.progress, query)).toBe(query);
    const mine = record({ status: "revoked", progress: 0, version: 6 });
    expect(mergeRecord(mine, RecordField.status, query)).toEqual({ ...query, status: "revoked", version: 6 });
    expect(query.version).toBe(5); // neither is changed
    expect(mine.progress).toBe(0);
  });
});
