/** The AsyncAPI 3.0.0 document of the contract, assembled from the zod schemas and the registries. */
import { z } from "zod";
import { CommandDefinitions, COMMAND_TYPES } from "../commands.js";
import { ERROR_CODES, ErrorCatalogue } from "../errors.js";
import { EventContexts, EventVersions, EVENT_TYPES } from "../events.js";
import { QueryDefinitions, QUERY_TYPES } from "../queries.js";
import { querySuccess } from "../replies.js";
import { ContentTypes } from "../codec.js";
import { Contexts, Headers } from "../subjects.js";
import { EventId } from "../values.js";
import { asyncApiSchema, eventVersions, schemaEntries, toJsonSchema, type JsonSchema } from "./json-schema.js";

const ref = (path: string) => ({ $ref: path });
const schemaRef = (name: string) => ref(`#/components/schemas/${name}`);
const messageRef = (name: string) => ref(`#/components/messages/${name}`);
const channelMessageRef = (channel: string, message: string) => ref(`#/channels/${channel}/messages/${message}`);
const nats = [ref("#/servers/nats")];

// W3C trace context (contract §2, §3): traceparent is a version, a trace id, a parent id and flags (a later version may add fields).
function traceHeaders(traceparent: string): JsonSchema {
  return {
    [Headers.TraceParent]: { type: "string", pattern: "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$", description: traceparent },
    [Headers.TraceState]: { type: "string", description: "W3C tracestate, with traceparent when present." },
  };
}

// Contract §3: a command or query request may be MessagePack (the default) or JSON.
const contentTypeHeader = { type: "string", enum: [ContentTypes.MsgPack, ContentTypes.Json], default: ContentTypes.MsgPack };
const requestHeaders: JsonSchema = {
  type: "object",
  properties: {
    [Headers.ContentType]: contentTypeHeader,
    [Headers.IdempotencyKey]: { type: "string", minLength: 1, maxLength: 128, description: "Scoped to (context, aggregate_id)." },
    [Headers.CorrelationId]: { type: "string", minLength: 1, maxLength: 128, description: "Defaults to the command id. At most 128 characters (longer is invalid_request)." },
    [Headers.CausationId]: { type: "string", minLength: 1, maxLength: 128, description: "Defaults to the command id. At most 128 characters (longer is invalid_request)." },
    ...traceHeaders("The trace the command belongs to (its events carry it); without one it starts a new trace."),
  },
};
const queryHeaders: JsonSchema = { type: "object", properties: { [Headers.ContentType]: contentTypeHeader } };
const errorHeaders: JsonSchema = {
  type: "object",
  properties: {
    [Headers.ServiceErrorCode]: { type: "string", enum: [...new Set(ERROR_CODES.map((c) => String(ErrorCatalogue[c].status)))] },
    [Headers.ServiceError]: { type: "string" },
  },
  required: [Headers.ServiceErrorCode, Headers.ServiceError],
};

function eventHeaders(eventType: string, version: number): JsonSchema {
  const { $schema: _dialect, ...eventId } = toJsonSchema(EventId, "draft-07");
  return {
    type: "object",
    properties: {
      [Headers.MsgId]: { ...eventId, description: "The event_id: JetStream deduplication." },
      [Headers.ContentType]: { type: "string", const: ContentTypes.MsgPack },
      [Headers.EventType]: { type: "string", const: eventType },
      [Headers.EventVersion]: { type: "string", const: String(version) },
      [Headers.TraceParent]: {
        type: "string",
        pattern: "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description:
          "The trace of the command that caused the event (a new root trace when that command came without one), as W3C version 00. Nerve writes it on every event it publishes; events it stored before it carried trace context (still in the streams, read on a replay from their start) have none, so a reader must not require it.",
      },
      [Headers.TraceState]: { type: "string", description: "W3C tracestate, with traceparent when present." },
    },
    required: [Headers.MsgId, Headers.ContentType, Headers.EventType, Headers.EventVersion],
  };
}

// The success reply of a query embeds its result by reference rather than copying it.
function querySuccessSchema(queryType: string): JsonSchema {
  const { $schema: _dialect, ...schema } = toJsonSchema(querySuccess(z.null()), "draft-07");
  const properties = { ...(schema.properties as JsonSchema), result: schemaRef(`query.${queryType}.result`) };
  return { title: `reply.${queryType}`, description: `The reply to a ${queryType} query that succeeded.`, ...schema, properties };
}

/** Builds the AsyncAPI document; `version` is the package version. */
export function buildAsyncApi(version: string): JsonSchema {
  const channels: JsonSchema = {};
  const operations: JsonSchema = {};
  const messages: JsonSchema = {};
  const schemas: JsonSchema = {};
  for (const entry of schemaEntries()) schemas[entry.name] = asyncApiSchema(entry);

  for (const t of EVENT_TYPES) {
    const context = EventContexts[t];
    const id = `event.${t}`;
    // Every version the stream may hold; the one published now first. Version 1 keeps its names.
    const versions = eventVersions(t).reverse();
    const key = (version: number) => (version === 1 ? t : `${t}V${version}`);
    for (const v of versions) {
      const superseded = v.version < EventVersions[t] ? ` Superseded by version ${EventVersions[t]}: published before it, still in the stream; Nerve's readers upcast it.` : "";
      messages[v.name] = {
        name: t,
        title: `${t} v${v.version}`,
        summary: `A ${Contexts[context].aggregate} event, kept in stream ${Contexts[context].stream}.${superseded}`,
        contentType: ContentTypes.MsgPack,
        headers: eventHeaders(t, v.version),
        correlationId: { location: "$message.payload#/correlation_id" },
        payload: schemaRef(v.name),
      };
    }
    channels[id] = {
      address: `events.${context}.${t}.{aggregate_id}`,
      servers: nats,
      messages: Object.fromEntries(versions.map((v) => [key(v.version), messageRef(v.name)])),
      parameters: { aggregate_id: ref("#/components/parameters/event_aggregate_id") },
    };
    operations[`publish.${t}`] = { action: "send", channel: ref(`#/channels/${id}`), messages: versions.map((v) => channelMessageRef(id, key(v.version))) };
  }

  channels["reply.command"] = {
    address: null,
    description: "The request's NATS reply inbox.",
    servers: nats,
    messages: { CommandSuccess: messageRef("reply.CommandSuccess"), ErrorReply: messageRef("reply.ErrorReply") },
  };
  for (const c of COMMAND_TYPES) {
    const def = CommandDefinitions[c];
    const id = `command.${c}`;
    messages[id] = {
      name: c,
      summary: `Emits ${def.emits[0]}${def.emits.length > 1 ? `; may also emit ${def.emits.slice(1).join(", ")}` : ""}.`,
      contentType: ContentTypes.MsgPack,
      headers: requestHeaders,
      correlationId: { location: `$message.header#/${Headers.CorrelationId}` },
      payload: schemaRef(id),
    };
    channels[id] = {
      address: `cmd.${def.context}.${c}.{aggregate_id}`,
      servers: nats,
      messages: { [c]: messageRef(id) },
      parameters: { aggregate_id: ref("#/components/parameters/aggregate_id") },
    };
    operations[`handle.${c}`] = {
      action: "receive",
      channel: ref(`#/channels/${id}`),
      messages: [channelMessageRef(id, c)],
      reply: {
        channel: ref("#/channels/reply.command"),
        messages: [channelMessageRef("reply.command", "CommandSuccess"), channelMessageRef("reply.command", "ErrorReply")],
      },
    };
  }

  for (const q of QUERY_TYPES) {
    const def = QueryDefinitions[q];
    const id = `query.${q}`;
    const replyId = `reply.${q}`;
    messages[id] = { name: q, contentType: ContentTypes.MsgPack, headers: queryHeaders, payload: schemaRef(id) };
    schemas[replyId] = querySuccessSchema(q);
    messages[replyId] = { name: `${q}Result`, contentType: ContentTypes.MsgPack, payload: schemaRef(replyId) };
    channels[id] = { address: `query.${def.context}.${q}`, servers: nats, messages: { [q]: messageRef(id) } };
    channels[`reply.query.${q}`] = {
      address: null,
      description: "The request's NATS reply inbox.",
      servers: nats,
      messages: { [`${q}Result`]: messageRef(replyId), ErrorReply: messageRef("reply.ErrorReply") },
    };
    operations[`answer.${q}`] = {
      action: "receive",
      channel: ref(`#/channels/${id}`),
      messages: [channelMessageRef(id, q)],
      reply: {
        channel: ref(`#/channels/reply.query.${q}`),
        messages: [channelMessageRef(`reply.query.${q}`, `${q}Result`), channelMessageRef(`reply.query.${q}`, "ErrorReply")],
      },
    };
  }

  messages["reply.CommandSuccess"] = { name: "CommandSuccess", contentType: ContentTypes.MsgPack, payload: schemaRef("reply.CommandSuccess") };
  messages["reply.ErrorReply"] = {
    name: "ErrorReply",
    summary: "Status by code: " + ERROR_CODES.map((c) => `${c} ${ErrorCatalogue[c].status}`).join(", ") + ".",
    contentType: ContentTypes.MsgPack,
    headers: errorHeaders,
    payload: schemaRef("reply.ErrorReply"),
  };

  const frames = ["welcome", "event", "ack", "reset", "UpdateProgress"] as const;
  for (const f of frames) messages[`ws.${f}`] = { name: f, contentType: ContentTypes.Json, payload: schemaRef(`ws.${f}`) };
  channels.ws = {
    address: "/v1/ws",
    title: "WebSocket gateway",
    description: "JWT (HS256 with NERVE_JWT_SECRET, or RS256/ES256/EdDSA against NERVE_JWT_JWKS; sub = user_id, exp required; iss/aud checked when configured) in `token` or `Authorization: Bearer`; refused with HTTP 401 or close code 4401. A client that cannot keep up is closed with 4408.",
    servers: [ref("#/servers/gateway")],
    messages: Object.fromEntries(frames.map((f) => [f, messageRef(`ws.${f}`)])),
    bindings: {
      ws: {
        method: "GET",
        query: {
          type: "object",
          properties: {
            token: { type: "string", description: "The JWT, unless sent as Authorization: Bearer." },
            cursor: { type: "string", description: "The last cursor seen: resume after it." },
          },
        },
        headers: { type: "object", properties: { Authorization: { type: "string", pattern: "^Bearer " } } },
        bindingVersion: "0.1.0",
      },
    },
  };
  operations["ws.sendFrames"] = {
    action: "send",
    channel: ref("#/channels/ws"),
    messages: ["welcome", "event", "ack", "reset"].map((f) => channelMessageRef("ws", f)),
  };
  operations["ws.receiveUpdateProgress"] = {
    action: "receive",
    channel: ref("#/channels/ws"),
    messages: [channelMessageRef("ws", "UpdateProgress")],
    reply: { channel: ref("#/channels/ws"), messages: [channelMessageRef("ws", "ack")] },
  };

  return {
    asyncapi: "3.0.0",
    info: {
      title: "Nerve",
      version,
      description: "The wire contract of Nerve, the event backbone of the online-course platform. Generated from contracts/ by `npm run contracts`; do not edit.",
    },
    defaultContentType: ContentTypes.MsgPack,
    servers: {
      nats: { host: "127.0.0.1:4222", protocol: "nats", description: "NATS_URL (default nats://127.0.0.1:4222); command and query service `nerve`." },
      gateway: { host: "127.0.0.1:8080", protocol: "ws", description: "The HTTP port (NERVE_HTTP_PORT, default 8080)." },
    },
    channels,
    operations,
    components: {
      parameters: {
        aggregate_id: { description: "The aggregate id: ^[A-Za-z0-9_-]{1,64}$." },
        event_aggregate_id: { description: "The aggregate id: ^[A-Za-z0-9_-]{1,64}$.", location: "$message.payload#/aggregate_id" },
      },
      messages,
      schemas,
    },
  };
}
