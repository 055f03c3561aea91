import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Parser, type AsyncAPIDocumentInterface, type Diagnostic } from "@asyncapi/parser";
import { beforeAll, describe, expect, it } from "vitest";
import { COMMAND_TYPES, CommandDefinitions, EVENT_TYPES, EventContexts, QUERY_TYPES, QueryDefinitions } from "../../contracts/index.js";
import { ASYNCAPI_PATH, committedSchemaFiles, renderArtefacts, REPO_ROOT } from "../../contracts/generate.js";

const STALE = "is stale or missing: run `npm run contracts` and commit the result";
const committed = readFileSync(join(REPO_ROOT, ASYNCAPI_PATH), "utf8");
let document: AsyncAPIDocumentInterface;
let diagnostics: Diagnostic[];

beforeAll(async () => {
  // ajv is pinned in devDependencies: with two copies hoisted, the parser fails on import (stoplightio/spectral#2802).
  const parsed = await new Parser().parse(committed);
  diagnostics = parsed.diagnostics;
  if (parsed.document === undefined) throw new Error(`AsyncAPI document did not parse: ${JSON.stringify(parsed.diagnostics.slice(0, 5))}`);
  document = parsed.document;
}, 60_000);

describe("contracts/asyncapi.yaml", () => {
  it("parses with no error diagnostics", () => {
    const errors = diagnostics.filter((d) => d.severity === 0).map((d) => `${d.path.join("/")}: ${d.message}`);
    expect(errors).toEqual([]);
  });

  it("is AsyncAPI 3.0.0 for Nerve at the package version", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    expect(document.version()).toBe("3.0.0");
    expect(document.info().title()).toBe("Nerve");
    expect(document.info().version()).toBe(pkg.version);
    expect(document.servers().all().map((s) => [s.id(), s.protocol()])).toEqual([["nats", "nats"], ["gateway", "ws"]]);
  });

  it("names every event, command and query type of the contract", () => {
    const names = new Set(document.components().messages().all().map((m) => m.name()));
    for (const type of [...EVENT_TYPES, ...COMMAND_TYPES, ...QUERY_TYPES]) expect(names, type).toContain(type);
  });

  it("has one channel per event, command and query, at the contract's subjects", () => {
    const addresses = new Set(document.channels().all().map((c) => c.address()));
    for (const t of EVENT_TYPES) expect(addresses).toContain(`events.${EventContexts[t]}.${t}.{aggregate_id}`);
    for (const c of COMMAND_TYPES) expect(addresses).toContain(`cmd.${CommandDefinitions[c].context}.${c}.{aggregate_id}`);
    for (const q of QUERY_TYPES) expect(addresses).toContain(`query.${QueryDefinitions[q].context}.${q}`);
    expect(addresses).toContain("/v1/ws");
  });

  it.each(EVENT_TYPES)("event %s is sent as MessagePack with the contract's headers", (type) => {
    const operation = document.operations().get(`publish.${type}`);
    expect(operation?.action()).toBe("send");
    const message = operation!.messages().all()[0]!;
    expect(message.name()).toBe(type);
    expect(message.contentType()).toBe("application/msgpack");
    // traceparent is on every event Nerve publishes, but not on those it stored before it carried trace
    // context, which a replay from the start of a stream reads: described, not required (was: required).
    expect(message.headers()?.required()).toEqual(["Nats-Msg-Id", "Content-Type", "Event-Type", "Event-Version"]);
    const traceparent = message.headers()!.properties()!["traceparent"]!;
    expect(traceparent.pattern()).toBe("^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$");
    expect(traceparent.description()).toContain("must not require it");
    expect(operation!.channels().all()[0]!.parameters().all().map((p) => p.id())).toEqual(["aggregate_id"]);
  });

  it("lists every version of CourseAccessGranted on its channel, the one published now first, each with its Event-Version", () => {
    const versions = (messages: ReturnType<AsyncAPIDocumentInterface["messages"]>) =>
      messages.all().map((m) => [m.title(), m.headers()?.properties()?.["Event-Version"]?.const(), m.payload()?.id()]);
    const expected = [
      ["CourseAccessGranted v2", "2", "event.CourseAccessGranted.v2"],
      ["CourseAccessGranted v1", "1", "event.CourseAccessGranted"],
    ];
    expect(versions(document.operations().get("publish.CourseAccessGranted")!.messages())).toEqual(expected);
    expect(versions(document.channels().get("event.CourseAccessGranted")!.messages())).toEqual(expected);
    expect(document.operations().get("publish.AccessRevoked")!.messages().all().map((m) => m.title())).toEqual(["AccessRevoked v1"]);
  });

  it.each(COMMAND_TYPES)("command %s is received and answered with CommandSuccess or ErrorReply", (type) => {
    const operation = document.operations().get(`handle.${type}`);
    expect(operation?.action()).toBe("receive");
    expect(operation!.messages().all().map((m) => m.name())).toEqual([type]);
    expect(operation!.reply()?.messages().all().map((m) => m.name())).toEqual(["CommandSuccess", "ErrorReply"]);
  });

  it.each(QUERY_TYPES)("query %s is received and answered with its result or ErrorReply", (type) => {
    const operation = document.operations().get(`answer.${type}`);
    expect(operation?.action()).toBe("receive");
    expect(operation!.messages().all().map((m) => m.name())).toEqual([type]);
    expect(operation!.reply()?.messages().all().map((m) => m.name())).toEqual([`${type}Result`, "ErrorReply"]);
  });

  it("describes the WebSocket gateway with a ws binding and its frames", () => {
    const channel = document.channels().get("ws")!;
    expect(channel.address()).toBe("/v1/ws");
    expect(channel.bindings().has("ws")).toBe(true);
    expect(channel.servers().all().map((s) => s.protocol())).toEqual(["ws"]);
    expect(channel.messages().all().map((m) => m.name())).toEqual(["welcome", "event", "ack", "reset", "UpdateProgress"]);
    expect(document.operations().get("ws.receiveUpdateProgress")?.reply()?.messages().all().map((m) => m.name())).toEqual(["ack"]);
  });
});

describe("generated artefacts", () => {
  const rendered = renderArtefacts();

  it("are rendered deterministically", () => {
    expect(renderArtefacts()).toEqual(rendered);
  });

  it.each([...rendered.keys()])("%s equals the committed file", (path) => {
    let onDisk: string | undefined;
    try {
      onDisk = readFileSync(join(REPO_ROOT, path), "utf8");
    } catch {
      onDisk = undefined;
    }
    expect(onDisk === rendered.get(path), `${path} ${STALE}`).toBe(true);
  });

  it("leave no schema file that nothing generates", () => {
    const extra = committedSchemaFiles().filter((p) => !rendered.has(p));
    expect(extra, `contracts/schemas ${STALE}`).toEqual([]);
  });

  it("have one JSON Schema per event, command, query body and query result, and the replies and frames", () => {
    const names = [...rendered.keys()].filter((p) => p.endsWith(".json")).map((p) => p.slice("contracts/schemas/".length, -".json".length));
    // One per event type and version: CourseAccessGranted has two.
    expect(names.filter((n) => n.startsWith("event."))).toHaveLength(20);
    expect(names).toEqual(expect.arrayContaining(["event.CourseAccessGranted", "event.CourseAccessGranted.v2"]));
    expect(names.filter((n) => n.startsWith("command."))).toHaveLength(17);
    expect(names.filter((n) => /^query\.\w+$/.test(n))).toHaveLength(11);
    expect(names.filter((n) => n.endsWith(".result"))).toHaveLength(11);
    expect(names).toEqual(expect.arrayContaining(["reply.CommandSuccess", "reply.ErrorReply", "ws.welcome", "ws.event", "ws.ack", "ws.reset", "ws.UpdateProgress"]));
    for (const path of rendered.keys()) {
      if (!path.endsWith(".json")) continue;
      const schema = JSON.parse(rendered.get(path)!) as Record<string, unknown>;
      expect(schema.$schema, path).toBe("https://json-schema.org/draft/2020-12/schema");
    }
  });

  it("keep the header comment and stable key order in the YAML", () => {
    expect(committed.startsWith("# Generated by contracts/generate.ts")).toBe(true);
    expect(committed.indexOf("\nchannels:")).toBeLessThan(committed.indexOf("\noperations:"));
    expect(committed.indexOf("\noperations:")).toBeLessThan(committed.indexOf("\ncomponents:"));
  });
});
