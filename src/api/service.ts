/** The command and query API: the NATS service `nerve` with one endpoint per context and kind. */
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import {
  CONTEXTS,
  CommandDefinitions,
  ID_PATTERN,
  NerveError,
  QueryDefinitions,
  SERVICE_NAME,
  encode,
  errors,
  isCommandOf,
  parseCommandSubject,
  type ContentType,
  type QueryType,
} from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import { reportFailure, sayingAtMostEvery } from "../supervision/index.js";
import { replyGuarded } from "../nats/reply-guard.js";
import type { CommandBus } from "../runtime/index.js";
import { SpanKind, activeTracer, endSpan, headersOf, startSpan, type Span } from "../tracing/index.js";
import { answerTooLarge, correlationOf, fitsOneMessage, forwardedHeaders, outOfRange, parseBody, replyError, replyOk, replyOkEncoded, replyRoom, requestContentType, requestHeaderReader, requestHeaders, requestTrace } from "./wire.js";
import type { ReplyRoom } from "../support/byte-budget.js";
import { uuidv7 } from "../runtime/uuid7.js";
import { detectRouting, PartitionSubscriptions, type RoutingMode } from "./routing.js";
import { parsePartitionSubject, partitionOf, partitionSubject, type Ownership } from "../cluster/index.js";
import { ChurnTable } from "../support/churn-table.js";
import { isTransientFailure, transientReason } from "../consumers/transient.js";
import { isValueOutOfRange } from "../persistence/integer-column.js";

/** Told about each answered request: context, type, result (`ok` or the error code), seconds from receipt to reply. */
export type ReplyObserver = (context: string, type: string, result: string, seconds: number) => void;

/** The label of a request whose context or type could not be told. */
const UNKNOWN = "unknown";

/** Answers one query with its result; `room` is what its reply can carry (a handler whose answer grows with the data heeds it). */
export type QueryHandler = (body: any, room: ReplyRoom) => Promise<unknown>;

/** Dependencies of the API. */
export interface ApiDeps {
  nc: NatsConnection;
  bus: CommandBus;
  queries: Partial<Record<QueryType, QueryHandler>>;
  logger: Logger;
  version: string;
  /** Named in the Nerve-Instance header of every reply. */
  instanceId?: string;
  /** Which partitions this instance owns; absent: all of them. */
  ownership?: Ownership;
  /** Reply latencies of commands and of queries (forwarded commands are their owner's). */
  observe?: { command: ReplyObserver; query: ReplyObserver };
  /**
   * Requests (commands and queries) handled at once, and their bodies' bytes: one past either, that this
   * instance would run itself (not a command it passes on to its partition's owner), is answered
   * `unavailable` at once, before its body is decoded (defaults 8,192 and 64 MiB). Without it a flood a
   * client sends faster than commits go kept every request in memory until the heap ran out.
   */
  admission?: { requests: number; bytes: number };
}

/** Figures of the API. */
export interface ApiStats {
  ok: number;
  failed: Record<string, number>;
  /** Commands passed on to their partition's owner (routing without the server mapping). */
  forwarded: number;
  /** Requests dropped unanswered for a reply subject Nerve must not publish to (`$…`, its own subjects: see reply-guard.ts). */
  refusedReplies: number;
  /** Requests answered `unavailable` at once because the instance had its most in hand (see {@link ApiDeps.admission}: NERVE_MAX_IN_HAND, NERVE_MAX_IN_HAND_BYTES). */
  overloaded: number;
  /** Requests in hand now, and their bodies' bytes. */
  inHand: { requests: number; bytes: number };
}

/** The running API. */
export interface Api {
  readonly service: Service;
  readonly stats: ApiStats;
  /** How commands reach their owners here (probed at start). */
  readonly routing: RoutingMode;
  /** The partitions whose `pcmd.<p>.>` this instance serves now. */
  partitions(): number[];
  /** The partitions lost here, still answered `unavailable` until their next owner serves them. */
  lingering(): number[];
  /** Whether the service's endpoints serve: false once it stopped, asked to or on its own (an endpoint's subscription lost). */
  serving(): boolean;
  /**
   * Stops the service's endpoints (`cmd.<context>.>`, queries) and waits for the requests in progress.
   * The partitions' subscriptions stay, answering what the instance can no longer take `unavailable`:
   * {@link releasePartitions} ends them once the leases are released.
   */
  stop(): Promise<void>;
  /** Ends the partitions' subscriptions, each once its next owner has one (bounded), and waits for what they took. */
  releasePartitions(): Promise<void>;
}

/** Requests one instance handles at once by default, and their bodies' bytes (see {@link ApiDeps.admission}). */
export const DEFAULT_ADMISSION = { requests: 8192, bytes: 64 * 1024 * 1024 };

const QUERY_CONTEXTS = [...new Set(Object.values(QueryDefinitions).map((q) => q.context))];

/** Starts the `nerve` service with endpoints `cmd.<context>.>` and `query.<context>.>`. */
export async function startApi(deps: ApiDeps): Promise<Api> {
  const stats: ApiStats = { ok: 0, failed: {}, forwarded: 0, refusedReplies: 0, overloaded: 0, inHand: { requests: 0, bytes: 0 } };
  const admission = deps.admission ?? DEFAULT_ADMISSION;
  // What callers outside Nerve reach (the service, with its $SRV handlers, and the partitions'
  // subscriptions) sees no request whose reply subject Nerve must not publish to; said at most once a minute.
  const sayRefused = sayingAtMostEvery();
  const callers = replyGuarded(deps.nc, (msg) => {
    stats.refusedReplies++;
    if (!sayRefused()) return;
    deps.logger.warn({ subject: msg.subject, reply: msg.reply, refused_so_far: stats.refusedReplies }, "a request named a reply subject Nerve does not publish to (the JetStream API, a system or Nerve subject): dropped unanswered");
  });
  // Before any endpoint: requests arrive as soon as one is added.
  const ownership = deps.ownership;
  // The handlers running, awaited at stop; not a Set (see ChurnTable): one comes and goes with every request.
  const inflight = new ChurnTable<Promise<void>>();
  let nextRequest = 0;
  const sayOverloaded = sayingAtMostEvery();
  const track = (msg: ServiceMsg, handle: (msg: ServiceMsg) => Promise<void>) => {
    const bytes = msg.data.length;
    const held = stats.inHand;
    held.requests++;
    held.bytes += bytes;
    const id = nextRequest++;
    const settled = () => {
      inflight.delete(id);
      held.requests--;
      held.bytes -= bytes;
    };
    // A handler answers every failure itself; what still escapes (the reply could not be sent) is logged.
    // One reaction for either outcome, not a `.catch` and then a `.finally` (two more promises per request).
    const p = handle(msg).then(settled, (err: unknown) => {
      try {
        reportFailure(deps.logger, "api", err, "request handler failed");
      } finally {
        settled();
      }
    });
    inflight.set(id, p);
  };
  // Called by a handler once it knows the request is this instance's to run (a command for a partition held
  // elsewhere is only passed on, whatever this instance holds), before its body is decoded: more in hand
  // than the instance takes (this one counted) is `unavailable` at once.
  const admit = (msg: ServiceMsg): void => {
    const held = stats.inHand;
    if (held.requests <= admission.requests && (held.requests <= 1 || held.bytes <= admission.bytes)) return;
    stats.overloaded++;
    if (sayOverloaded()) {
      deps.logger.warn({ subject: msg.subject, in_hand: held, most: admission, refused_so_far: stats.overloaded }, "requests answered unavailable: this instance has its most requests in hand (said at most once a minute)");
    }
    throw errors.unavailable(`this instance has its most requests in hand (${admission.requests} requests or ${admission.bytes} bytes); retry shortly`);
  };
  // A storage or NATS failure that passes by itself (the database restarting or out of reach, a lock held
  // elsewhere) met on a read — an idempotency lookup, an actor's load, a query — is `unavailable`, retry,
  // as at commit; it was `internal`, a bug not to retry, and an error line per request for the outage.
  const sayTransient = sayingAtMostEvery();
  const fail = (msg: ServiceMsg, ct: ContentType | undefined, err: unknown, what: string): NerveError => {
    let e: NerveError;
    if (err instanceof NerveError) e = err;
    else if (isValueOutOfRange(err)) e = outOfRange();
    else if (isTransientFailure(err)) {
      e = errors.unavailable(`${what} could not be served now (${transientReason(err)}); retry`);
      if (sayTransient()) {
        deps.logger.warn({ err, subject: msg.subject, unavailable_so_far: (stats.failed.unavailable ?? 0) + 1 }, "requests answered unavailable: the storage, JetStream or a partition's move failed them (said at most once a minute)");
      }
    } else e = errors.internal(`${what} failed`, err);
    // A bug is logged once with a correlation id its reply names (CONTRACT.md §3), so a caller's report
    // leads to the line: the command bus logged its own already (`decider failed`, the command's id);
    // any other is logged here, with the request's Correlation-Id or a new one.
    if (e.code === "internal" && e.details?.correlation_id === undefined) {
      const correlation_id = correlationOf(msg) ?? uuidv7();
      e = new NerveError("internal", e.message, { cause: e.cause ?? err, details: { ...e.details, correlation_id } });
      deps.logger.error({ err, subject: msg.subject, correlation_id }, "request failed");
    }
    stats.failed[e.code] = (stats.failed[e.code] ?? 0) + 1;
    replyError(msg, ct, e, deps.instanceId);
    return e;
  };

  const routing = await detectRouting(deps.nc);
  deps.logger.info({ routing }, routing === "mapped" ? "commands reach partition owners through the server's mapping" : "no partition mapping on the server: instances forward commands to their owners");
  const partitions = ownership ? new PartitionSubscriptions(callers, ownership, (msg) => track(msg, handleCommand), deps.logger) : undefined;
  await partitions?.start();
  // The service last, its endpoints right after it: once it answers $SRV.PING (what callers and the
  // tests take for ready), every endpoint follows in the same flush — not after the routing probe's
  // round trips, when a query sent on the first PING reply found no responders.
  const service = await new Svcm(callers).add({ name: SERVICE_NAME, version: deps.version, description: "Nerve commands and queries" });
  for (const context of CONTEXTS) {
    service.addEndpoint(`cmd-${context}`, {
      subject: `cmd.${context}.>`,
      metadata: { commands: Object.keys(CommandDefinitions).filter((t) => isCommandOf(context, t)).join(",") },
      handler: (_err, msg) => track(msg, handleCommand),
    });
  }
  for (const context of QUERY_CONTEXTS) {
    service.addEndpoint(`query-${context}`, { subject: `query.${context}.>`, handler: (_err, msg) => track(msg, handleQuery) });
  }
  // Every other subject under cmd.> and query.> — a context Nerve does not have, a subject with too few
  // tokens — is answered `invalid_request` by the same handlers instead of the server's "no responders".
  // These endpoints overlap the ones above, in the same queue group (the service's default, `q`):
  // nats-server puts every queue subscription of one name that a message matches into one group, whatever
  // their subjects (v2.9.10 server/sublist.go, addNodeToResults/findQSlot), so a command on cmd.users.… still
  // goes to one subscription of one instance — either endpoint, the same handler — also beside older
  // instances that have only the per-context endpoints (test/nats/queue-groups.int.test.ts shows the server's side).
  service.addEndpoint("cmd-any", { subject: "cmd.>", metadata: { serves: "any cmd.> subject: unknown contexts and malformed subjects are answered invalid_request" }, handler: (_err, msg) => track(msg, handleCommand) });
  service.addEndpoint("query-any", { subject: "query.>", metadata: { serves: "any query.> subject: unknown contexts and queries are answered invalid_request" }, handler: (_err, msg) => track(msg, handleQuery) });

  // @nats-io/services closes the whole service when one endpoint's subscription ends or errs (a
  // permissions violation after a server's configuration reload, say): every cmd.* and query.* then
  // goes unanswered. Said loudly, and /readyz reports it (`api: false`), rather than found by callers.
  let stopRequested = false;
  let serving = true;
  void service.stopped.then(
    (err) => {
      serving = false;
      if (!stopRequested) reportFailure(deps.logger, "api service", err ?? new Error("the service stopped"), "the NATS service stopped on its own: commands and queries go unanswered until this instance restarts");
    },
    () => undefined,
  );

  // Subscriptions are live on the server once flushed: a request sent right after start is answered.
  await deps.nc.flush();

  async function handleCommand(msg: ServiceMsg): Promise<void> {
    // A publish, not a request (the routing probe, say): there is nobody to answer.
    if (!msg.reply) return;
    const received = performance.now();
    let ct: ContentType | undefined;
    let context: string = UNKNOWN;
    let type: string = UNKNOWN;
    let span: Span | undefined;
    let failure: NerveError | undefined;
    try {
      // Read once for the content type and the command's headers (each read checks the whole block).
      const h = requestHeaderReader(msg);
      ct = requestContentType(msg, h);
      const routed = msg.subject.startsWith("pcmd.") ? parsePartitionSubject(msg.subject) : undefined;
      const parts = routed ?? parseCommandSubject(msg.subject);
      if (!parts) throw errors.invalidRequest("subject must be cmd.<context>.<CommandType>.<aggregate_id> with a safe id");
      if (!ID_PATTERN.test(parts.aggregateId)) throw errors.invalidRequest("aggregate_id must match ^[A-Za-z0-9_-]{1,64}$");
      if (!isCommandOf(parts.context, parts.commandType)) throw errors.invalidRequest(`unknown command ${parts.context}.${parts.commandType}`);
      context = parts.context;
      type = parts.commandType;
      if (ownership) {
        const partition = partitionOf(parts.aggregateId);
        if (!ownership.fence(partition)) {
          // Forwarded once at most: a routed request that finds its owner gone is answered, never bounced.
          if (routed || !msg.reply) throw errors.unavailable(`partition ${partition} is moving between instances; retry`, { partition });
          deps.nc.publish(partitionSubject(partition, parts.context, parts.commandType, parts.aggregateId), msg.data, { reply: msg.reply, headers: forwardedHeaders(msg) });
          stats.forwarded++;
          return;
        }
      }
      admit(msg);
      const def = CommandDefinitions[parts.commandType];
      const body = parseBody(msg, ct, def.body);
      const headers = requestHeaders(msg, h);
      const tracer = activeTracer();
      if (tracer) {
        // The request's span: its events and everything they cause carry it on (CONTRACT.md §2).
        span = startSpan(tracer, `command ${type}`, SpanKind.SERVER, headers, { "nerve.context": context, "nerve.aggregate_id": parts.aggregateId }, received);
        Object.assign(headers, headersOf(span));
      }
      // Written out rather than spread from the headers: one object of a fixed shape per command.
      const reply = await deps.bus.execute({
        context: def.context,
        type: parts.commandType,
        aggregateId: parts.aggregateId,
        body,
        idempotencyKey: headers.idempotencyKey,
        correlationId: headers.correlationId,
        causationId: headers.causationId,
        traceparent: headers.traceparent,
        tracestate: headers.tracestate,
      });
      stats.ok++;
      replyOk(msg, ct, reply, deps.instanceId);
    } catch (err) {
      failure = fail(msg, ct, err, "command");
    }
    endSpan(span, failure);
    deps.observe?.command(context, type, failure?.code ?? "ok", (performance.now() - received) / 1000);
  }

  async function handleQuery(msg: ServiceMsg): Promise<void> {
    const received = performance.now();
    let ct: ContentType | undefined;
    let knownContext: string = UNKNOWN;
    let knownType: string = UNKNOWN;
    let span: Span | undefined;
    let failure: NerveError | undefined;
    try {
      ct = requestContentType(msg);
      const [, context, type, ...rest] = msg.subject.split(".");
      const def = Object.hasOwn(QueryDefinitions, type ?? "") ? QueryDefinitions[type as QueryType] : undefined;
      if (!def || def.context !== context || rest.length > 0) throw errors.invalidRequest(`unknown query ${context}.${type}`);
      knownContext = context;
      knownType = type!;
      const tracer = activeTracer();
      admit(msg);
      if (tracer) span = startSpan(tracer, `query ${type}`, SpanKind.SERVER, requestTrace(msg), { "nerve.context": context }, received);
      const body = parseBody(msg, ct, def.body);
      const handler = deps.queries[type as QueryType];
      if (!handler) throw errors.unavailable(`${type} is not served by this instance`);
      const maxPayload = deps.nc.info?.max_payload;
      const result = await handler(body, replyRoom(type!, ct, maxPayload));
      const data = encode(ct, { ok: true, result });
      // Sent as it is, nats.js would refuse it and the requester see `internal`; say what happened, and how to page where one can.
      if (!fitsOneMessage(data.length, maxPayload)) throw answerTooLarge(type!, data.length, maxPayload);
      replyOkEncoded(msg, ct, data, deps.instanceId);
      stats.ok++;
    } catch (err) {
      failure = fail(msg, ct, err, "query");
    }
    endSpan(span, failure);
    deps.observe?.query(knownContext, knownType, failure?.code ?? "ok", (performance.now() - received) / 1000);
  }

  return {
    service,
    stats,
    routing,
    partitions: () => partitions?.partitions ?? [],
    lingering: () => partitions?.lingering ?? [],
    serving: () => serving,
    async stop() {
      stopRequested = true;
      await service.stop();
      await Promise.allSettled(inflight.values());
    },
    async releasePartitions() {
      await partitions?.stop();
      await Promise.allSettled(inflight.values());
    },
  };
}
