/**
 * Which fields of an access record the gateway knows. The start-up replay reaches back `replayMs`
 * only (and a learner forgotten by the log loses its records): a record whose first event the log
 * reads is not its grant is begun from a placeholder (active, progress 0, not completed, no expiry,
 * no order), and only the fields its later events set are the record's own. The welcome then takes
 * the rest from GetLearnerProgress (CONTRACT.md §6: its progress is GetAccess results).
 */
import type { AccessRecordView, LearnerEventType } from "./event-log.js";

/** A field of a record an event sets, as a bit of a {@link KnownFields} mask. */
export const RecordField = { status: 1, progress: 2, completed: 4, expires_at: 8, order_id: 16 } as const;
/** A mask of {@link RecordField} bits. */
export type KnownFields = number;
/** Every field an event can set: a record that has them all is the record's own again. */
export const ALL_FIELDS: KnownFields = RecordField.status | RecordField.progress | RecordField.completed | RecordField.expires_at | RecordField.order_id;

const SET_BY: Record<LearnerEventType, KnownFields> = {
  CourseAccessGranted: RecordField.status | RecordField.expires_at | RecordField.order_id,
  AccessRevoked: RecordField.status,
  AccessExpired: RecordField.status,
  ProgressUpdated: RecordField.progress,
  CourseCompleted: RecordField.completed,
};

const FIELDS = Object.entries(RecordField) as [keyof typeof RecordField, number][];

/** The fields an event of this type sets (the access record's `evolve`). */
export function fieldsSetBy(type: LearnerEventType): KnownFields {
  return SET_BY[type];
}

/**
 * What a welcome shows of a record: the gateway's view `mine` (`known` is undefined when it was folded
 * from its grant, else the fields its events set) merged with GetLearnerProgress's `item`. The newer
 * version wins; at equal versions a complete view is kept (the query adds nothing) and a partial one
 * gives way to the query. A partial view newer than the query shows the query's record with the fields
 * the gateway's events set on top: those events are what came after it.
 */
export function mergeRecord(mine: AccessRecordView | undefined, known: KnownFields | undefined, item: AccessRecordView): AccessRecordView {
  if (!mine) return item;
  if (known === undefined) return mine.version >= item.version ? mine : item;
  if (item.version >= mine.version) return item;
  const merged: Record<string, unknown> = { ...item };
  for (const [field, bit] of FIELDS) if (known & bit) merged[field] = mine[field];
  merged.version = mine.version;
  return merged as AccessRecordView;
}
