/** WebSocket frames of the gateway (CONTRACT.md §6). */
import { z } from "zod";
import { EnvelopeBase } from "./events.js";
import { AccessView } from "./queries.js";
import { ErrorBody } from "./replies.js";
import { Id, PlainText } from "./values.js";
import { Percent } from "./payloads.js";

/** An opaque resume cursor. */
export const Cursor = PlainText.min(1).max(256);

/** Sent once on connect: the learner's access records and the cursor to resume from. */
export const WelcomeFrame = z.strictObject({ type: z.literal("welcome"), user_id: Id, cursor: Cursor, progress: z.array(AccessView) });
/** One of the learner's own events. */
export const EventFrame = z.strictObject({ type: z.literal("event"), cursor: Cursor, event: EnvelopeBase });
/** The answer to a client frame. */
export const AckFrame = z.strictObject({ type: z.literal("ack"), request_id: PlainText.max(128).nullable(), ok: z.boolean(), error: ErrorBody.optional() });
/** The resume cursor is too old: a fresh welcome follows. */
export const ResetFrame = z.strictObject({ type: z.literal("reset") });
/** Any frame the server sends. */
export const ServerFrame = z.discriminatedUnion("type", [WelcomeFrame, EventFrame, AckFrame, ResetFrame]);
export type ServerFrame = z.infer<typeof ServerFrame>;

/** A client's progress update for the token's own user. */
export const UpdateProgressFrame = z.strictObject({
  type: z.literal("UpdateProgress"),
  request_id: PlainText.min(1).max(128),
  course_id: Id,
  progress: Percent,
});
/** Any frame a client may send. */
export const ClientFrame = z.discriminatedUnion("type", [UpdateProgressFrame]);
export type ClientFrame = z.infer<typeof ClientFrame>;

/** WebSocket close codes of the contract. */
export const CloseCodes = { Unauthorized: 4401, TooSlow: 4408 } as const;
