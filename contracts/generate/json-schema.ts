/** JSON Schemas of every wire shape, converted from the zod schemas (CONTRACT.md §2–§6). */
import { z } from "zod";
import { CommandDefinitions, COMMAND_TYPES } from "../commands.js";
import { EventContexts, EventSchemas, EventVersions, EVENT_TYPES, OlderEventSchemas, type EventType } from "../events.js";
import { QueryDefinitions, QUERY_TYPES } from "../queries.js";
import { CommandSuccess, ErrorReply } from "../replies.js";
import { AckFrame, ClientFrame, EventFrame, ResetFrame, ServerFrame, UpdateProgressFrame, WelcomeFrame } from "../websocket.js";

/** A JSON Schema document or subschema. */
export type JsonSchema = Record<string, unknown>;

/** The JSON Schema dialects we emit: 2020-12 for the files, draft-07 inside AsyncAPI (its schema format). */
export type SchemaTarget = "draft-2020-12" | "draft-07";

/** One wire shape: its artefact name (file name without `.json`), what it is, and its zod schema. */
export interface SchemaEntry {
  readonly name: string;
  readonly description: string;
  readonly schema: z.ZodType;
}

/** What JSON Schema cannot say; noted in every description so nobody mistakes the files for the whole contract. */
const REFINEMENTS_NOTE =
  "Refinements (distinct course_ids, BCP 47 locales, IANA time zones, at least one field in a patch) are checked by the zod schemas in contracts/ only.";

/** Every wire shape that gets a JSON Schema, in a fixed order (events, commands, queries, replies, frames). */
export function schemaEntries(): SchemaEntry[] {
  const entries: SchemaEntry[] = [];
  for (const t of EVENT_TYPES) entries.push(...eventEntries(t));
  for (const c of COMMAND_TYPES) {
    const def = CommandDefinitions[c];
    entries.push({ name: `command.${c}`, description: `Body of the ${c} command, sent to cmd.${def.context}.${c}.<aggregate_id>.`, schema: def.body });
  }
  for (const q of QUERY_TYPES) {
    const def = QueryDefinitions[q];
    entries.push({ name: `query.${q}`, description: `Body of the ${q} query, sent to query.${def.context}.${q}.`, schema: def.body });
    entries.push({ name: `query.${q}.result`, description: `The result of ${q}: the \`result\` of its success reply { ok: true, result }.`, schema: def.result });
  }
  entries.push(
    { name: "reply.CommandSuccess", description: "The reply to a command that succeeded (events is empty when nothing changed).", schema: CommandSuccess },
    { name: "reply.ErrorReply", description: "The reply to a command or query that failed.", schema: ErrorReply },
    { name: "ws.welcome", description: "WebSocket server frame sent once on connect.", schema: WelcomeFrame },
    { name: "ws.event", description: "WebSocket server frame carrying one of the user's own events.", schema: EventFrame },
    { name: "ws.ack", description: "WebSocket server frame answering a client frame.", schema: AckFrame },
    { name: "ws.reset", description: "WebSocket server frame: the resume cursor is too old; a fresh welcome follows.", schema: ResetFrame },
    { name: "ws.UpdateProgress", description: "WebSocket client frame: a progress update for the token's own user.", schema: UpdateProgressFrame },
    { name: "ws.ServerFrame", description: "Any WebSocket frame the server sends.", schema: ServerFrame },
    { name: "ws.ClientFrame", description: "Any WebSocket frame a client may send.", schema: ClientFrame },
  );
  return entries;
}

/** One event version's schema: its artefact name, the version, and its envelope schema. */
export interface EventVersionEntry {
  readonly name: string;
  readonly version: number;
  readonly schema: z.ZodType;
}

/**
 * Every version of an event type, oldest first. A version keeps its artefact name forever, so a
 * published schema never changes meaning: version 1 is `event.<type>`, later ones `event.<type>.v<n>`.
 */
export function eventVersions(t: EventType): EventVersionEntry[] {
  const older: Record<number, z.ZodType> = Object.hasOwn(OlderEventSchemas, t) ? OlderEventSchemas[t as keyof typeof OlderEventSchemas] : {};
  const versions = [...Object.entries(older).map(([v, schema]) => ({ version: Number(v), schema })), { version: EventVersions[t], schema: EventSchemas[t] as z.ZodType }];
  return versions.sort((a, b) => a.version - b.version).map(({ version, schema }) => ({ name: version === 1 ? `event.${t}` : `event.${t}.v${version}`, version, schema }));
}

// A published schema keeps its text, description included; the AsyncAPI messages say which version is current.
function eventEntries(t: EventType): SchemaEntry[] {
  const context = EventContexts[t];
  return eventVersions(t).map(({ name, version, schema }) => ({
    name,
    description: `${t} v${version} event envelope, published on events.${context}.${t}.<aggregate_id>.`,
    schema,
  }));
}

/** Converts a zod schema to JSON Schema as clients send it (`io: "input"`); refinements are simply left out. */
export function toJsonSchema(schema: z.ZodType, target: SchemaTarget): JsonSchema {
  return z.toJSONSchema(schema, { target, io: "input", unrepresentable: "any" }) as JsonSchema;
}

/** The standalone Draft 2020-12 document of an entry, with a title and description up front. */
export function schemaDocument(entry: SchemaEntry): JsonSchema {
  const { $schema, ...rest } = toJsonSchema(entry.schema, "draft-2020-12");
  return { $schema, title: entry.name, description: `${entry.description} ${REFINEMENTS_NOTE}`, ...rest };
}

/** The draft-07 form of an entry for AsyncAPI `components.schemas` (AsyncAPI's default schema format has no `$schema`). */
export function asyncApiSchema(entry: SchemaEntry): JsonSchema {
  const { $schema: _dialect, ...rest } = toJsonSchema(entry.schema, "draft-07");
  return { title: entry.name, description: entry.description, ...rest };
}
