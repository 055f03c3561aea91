/** Runs commands on actors: idempotency, facts, decide, one durable write, then the reply. */
import { uuidv7 } from "./uuid7.js";
import {
  EventVersions,
  decidedEventProblem,
  NerveError,
  encodeMsgPack,
  errors,
  eventSubject,
  type AggregateType,
  type Command,
  type CommandSuccess,
  type CommandType,
  type Context,
  type DomainEvent,
} from "../../contracts/index.js";
import type { Logger } from "../log/index.js";
import { CommitOutcomeUnknown, StaleWriteError, type AggregateWrite, type EventWrite, type GroupCommitWriter, type Repository } from "../persistence/index.js";
import type { Actor } from "./actor.js";
import type { ActorSystem } from "./actor-system.js";
import type { AggregateModule, Lookups } from "./aggregate-module.js";
import type { RecordedEvent } from "../../actors/decider.js";
import { fingerprint } from "./stable-json.js";
import { isTransientFailure, transientReason } from "../consumers/transient.js";
import { sayingAtMostEvery } from "../supervision/index.js";
import { FencedError, partitionOf, type Fence, type Ownership } from "../cluster/index.js";
import { SpanKind, activeTracer, contextOf, endSpan, headersOf, rootTraceparent, startSpan, type Span } from "../tracing/index.js";
import type { Context as TraceContext, Tracer } from "@opentelemetry/api";

/** A validated command with what the transport adds. */
export interface CommandRequest {
  context: Context;
  type: CommandType;
  aggregateId: string;
  body: unknown;
  idempotencyKey?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  /** The W3C trace context the command belongs to (validated): its events carry it (CONTRACT.md §2); a new one when absent. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/** Where a traced command's spans go: its tracer and the command's span context. */
interface CommandTrace {
  tracer: Tracer;
  parent: TraceContext;
}

/** Dependencies of the command bus. */
export interface CommandBusDeps {
  system: ActorSystem;
  writer: GroupCommitWriter;
  repo: Repository;
  modules: AggregateModule[];
  logger: Logger;
  /** The clock; tests move it. */
  clock?: () => Date;
  /** Which partitions this instance may decide and commit for; absent: all of them (one instance). */
  ownership?: Ownership;
  /** Sends a command to the instance owning its aggregate (through NATS); used by {@link CommandBus.dispatch}. */
  remote?: (req: CommandRequest) => Promise<CommandSuccess>;
  /** Told where each command's time went (seconds), for /metrics: see {@link CommandStages}. */
  stages?: (stages: CommandStages) => void;
}

/**
 * A command's time by stage: waiting for its actor (the mailbox, and the actor's activation from its
 * snapshot), preparing its write (idempotency lookup, facts, decide, evolve, envelopes), and waiting for
 * its commit (the group commit's queue, admission and transaction). Commands that write nothing have no commit.
 */
export interface CommandStages {
  mailbox: number;
  prepare: number;
  commit: number | undefined;
}

/** The command path of the service. */
export class CommandBus implements Lookups {
  readonly #deps: CommandBusDeps;
  readonly #byContext = new Map<string, AggregateModule>();
  readonly #byType = new Map<string, AggregateModule>();
  readonly repo: Repository;
  /** Commands answered unavailable because their facts could not be read; said at most once a minute. */
  #factsUnavailable = 0;
  readonly #sayFactsUnavailable = sayingAtMostEvery();
  /** Commits refused by storage that is out of reach, locked or full; said at most once a minute. */
  #commitsUnavailable = 0;
  readonly #sayCommitsUnavailable = sayingAtMostEvery();

  constructor(deps: CommandBusDeps) {
    this.#deps = deps;
    this.repo = deps.repo;
    for (const m of deps.modules) {
      this.#byContext.set(m.context, m);
      this.#byType.set(m.aggregateType, m);
    }
  }

  /** The module hosting a context, if any. */
  moduleOf(context: string): AggregateModule | undefined {
    return this.#byContext.get(context);
  }

  /**
   * An aggregate's committed state: from its actor when this instance owns its partition, else from
   * the committed snapshot (never a cached actor: the owner elsewhere may have changed it since).
   */
  async readState<S>(aggregateType: AggregateType, aggregateId: string): Promise<{ state: S | null; version: number }> {
    const own = this.#deps.ownership;
    const fence = own?.fence(partitionOf(aggregateId));
    if (!own || fence) {
      const read = await this.#deps.system.read(aggregateType, aggregateId, (a) => ({ state: a.state as S | null, version: a.version }));
      // Still the owner under the same epoch once read (the actor may have waited for its mailbox, or
      // loaded): else the partition moved meanwhile and the actor may be behind its new owner.
      if (!own || this.#holds(fence)) return read;
    }
    const snap = await this.#deps.repo.loadSnapshot<S>(aggregateType, aggregateId);
    return { state: snap?.state ?? null, version: snap?.version ?? 0 };
  }

  // Whether this instance still holds a fence's partition under the same epoch.
  #holds(fence: Fence | undefined): boolean {
    return fence === undefined || this.#deps.ownership?.fence(fence.partition)?.epoch === fence.epoch;
  }

  // An answer that commits nothing (a refusal, a no-op) is checked against its fence before it goes
  // out, as a commit is in its transaction: a partition lost while the command decided (a stall past
  // the lease's validity, the facts read from a slow database) is its new owner's to answer.
  #stillHeld(fence: Fence | undefined): void {
    if (!this.#holds(fence)) throw errors.unavailable(`partition ${fence!.partition} moved to another instance while the command ran: retry`, { partition: fence!.partition });
  }

  /** The query view of an aggregate; `not_found` when it does not exist. */
  async view(context: Context, aggregateId: string): Promise<unknown> {
    const m = this.#module(context);
    const { state, version } = await this.readState(m.aggregateType, aggregateId);
    if (state === null) throw errors.notFound(`${m.aggregateType} ${aggregateId} does not exist`);
    return m.view(state, version);
  }

  /** Executes a command; resolves with the contract's success reply once its events are durable. */
  execute(req: CommandRequest): Promise<CommandSuccess> {
    return this.#exclusive(this.#module(req.context), req);
  }

  /**
   * Executes a command here when this instance owns the aggregate's partition, else sends it to the
   * owner: what process managers use, since the aggregates their events name may live anywhere.
   */
  dispatch(req: CommandRequest): Promise<CommandSuccess> {
    const { ownership, remote } = this.#deps;
    if (ownership && remote && !ownership.fence(partitionOf(req.aggregateId))) return remote(req);
    return this.execute(req);
  }

  /**
   * Runs an internal operation (a durable timer's, say) exclusively on an aggregate, like a command:
   * `decide` gets the state and the clock, its events are stored and published the same way.
   */
  executeInternal(context: Context, aggregateId: string, name: string, decide: (state: unknown, now: string) => DomainEvent[]): Promise<CommandSuccess> {
    const m = this.#module(context);
    const req: CommandRequest = { context, type: name as CommandType, aggregateId, body: {} };
    return this.#exclusive(m, req, decide);
  }

  #exclusive(m: AggregateModule, req: CommandRequest, internal?: (state: unknown, now: string) => DomainEvent[]): Promise<CommandSuccess> {
    const tracer = activeTracer();
    if (tracer) return this.#traced(tracer, m, req, internal);
    // Untraced here, a command outside any trace still starts one: its events carry it (CONTRACT.md §2).
    if (!req.traceparent) req = withTrace(req, rootTraceparent());
    const enqueued = performance.now();
    return this.#deps.system.exclusive(m.aggregateType, req.aggregateId, (actor) => this.#run(m, actor, req, internal, undefined, enqueued));
  }

  /**
   * {@link #exclusive} with spans under the command's span (the API's request span, a process
   * manager's issue span, or a new root for an internal operation): mailbox wait, decide, commit.
   */
  async #traced(tracer: Tracer, m: AggregateModule, req: CommandRequest, internal?: (state: unknown, now: string) => DomainEvent[]): Promise<CommandSuccess> {
    let root: Span | undefined;
    if (!req.traceparent) {
      root = startSpan(tracer, `command ${req.type}`, SpanKind.INTERNAL, undefined, { "nerve.context": req.context, "nerve.aggregate_id": req.aggregateId });
      req = { ...req, ...headersOf(root) };
    }
    const trace: CommandTrace = { tracer, parent: contextOf(req) };
    const enqueued = performance.now();
    const wait = tracer.startSpan("mailbox wait", undefined, trace.parent);
    let waiting = true;
    try {
      const reply = await this.#deps.system.exclusive(m.aggregateType, req.aggregateId, (actor) => {
        waiting = false;
        wait.end();
        return this.#run(m, actor, req, internal, trace, enqueued);
      });
      endSpan(root);
      return reply;
    } catch (err) {
      if (waiting) endSpan(wait, err);
      endSpan(root, err);
      throw err;
    }
  }

  #module(context: string): AggregateModule {
    const m = this.#byContext.get(context);
    if (!m) throw errors.invalidRequest(`unknown context ${context}`);
    return m;
  }

  // The fencing token to decide and commit under; unavailable (retry) when the partition is not held here.
  #fence(aggregateId: string): Fence | undefined {
    const own = this.#deps.ownership;
    if (!own) return undefined;
    const partition = partitionOf(aggregateId);
    const fence = own.fence(partition);
    if (!fence) throw errors.unavailable(`partition ${partition} is not held by this instance (owned elsewhere or moving): retry`, { partition });
    return fence;
  }

  async #run(m: AggregateModule, actor: Actor, req: CommandRequest, internal?: (state: unknown, now: string) => DomainEvent[], trace?: CommandTrace, enqueued?: number): Promise<CommandSuccess> {
    const started = performance.now();
    // Queued on an actor forgotten while it was busy (its partition lost, perhaps taken back under a new
    // epoch): another actor of the aggregate may be deciding beside it. Refused, to be retried on that one.
    if (actor.retired) throw errors.unavailable(`the aggregate's partition ${partitionOf(req.aggregateId)} moved or is moving between instances; retry`, { partition: partitionOf(req.aggregateId) });
    const fence = this.#fence(req.aggregateId);
    const commandId = uuidv7();
    const print = req.idempotencyKey ? fingerprint({ type: req.type, body: req.body }) : "";
    if (req.idempotencyKey) {
      const stored = this.#storedReply(await this.#deps.repo.findIdempotencyKey(m.aggregateType, req.aggregateId, req.idempotencyKey), req, print);
      if (stored) return stored;
    }
    const now = (this.#deps.clock?.() ?? new Date()).toISOString();
    const command = { type: req.type, aggregate_id: req.aggregateId, body: req.body, now } as Command;
    let domainEvents: DomainEvent[];
    const deciding = trace?.tracer.startSpan("decide", undefined, trace.parent);
    try {
      if (internal) {
        domainEvents = internal(actor.state, now);
      } else {
        const facts = m.facts ? await m.facts(command, actor.state, this) : {};
        domainEvents = m.decider.decide(command, actor.state, facts);
      }
    } catch (err) {
      const e = await this.#asNerveError(err, actor, req, commandId);
      endSpan(deciding, e);
      this.#stillHeld(fence);
      throw e;
    }
    endSpan(deciding);
    const correlation = req.correlationId ?? commandId;
    const causation = req.causationId ?? commandId;
    let state = actor.state;
    let version = actor.version;
    const events: EventWrite[] = [];
    try {
      for (const e of domainEvents) {
        // The recorded event written out (evolve reads its type, payload and time), not spread from the decided one.
        state = m.decider.evolve(state, { event_type: e.event_type, payload: e.payload, occurred_on: now } as RecordedEvent);
        version++;
        events.push(this.#envelope(m, req.aggregateId, version, e, now, correlation, causation));
      }
    } catch (err) {
      throw await this.#asNerveError(err, actor, req, commandId);
    }
    const reply: CommandSuccess = {
      ok: true,
      aggregate_id: req.aggregateId,
      aggregate_version: version,
      events: events.map((e) => ({ event_id: e.event_id, event_type: e.event_type })),
    };
    const prepared = performance.now();
    if (events.length === 0 && !req.idempotencyKey) {
      this.#stillHeld(fence);
      this.#stages(enqueued, started, prepared, undefined);
      return reply;
    }
    const write: AggregateWrite = {
      aggregateType: m.aggregateType,
      aggregateId: req.aggregateId,
      baseVersion: actor.version,
      version,
      state,
      now,
      events,
      idempotency: req.idempotencyKey ? { key: req.idempotencyKey, fingerprint: print, reply } : undefined,
      extra: m.extra?.(req.aggregateId, domainEvents, state),
      fence,
      traceparent: req.traceparent,
      tracestate: req.tracestate,
    };
    const committing = trace?.tracer.startSpan("commit", { attributes: { "nerve.events": events.length } }, trace.parent);
    try {
      await this.#deps.writer.submit(write);
    } catch (err) {
      endSpan(committing, err);
      // The storage that refused the commit may refuse the reload too: the commit's failure is the answer
      // (a reload's own error escaped as `internal`, which tells a client not to retry an outage). The
      // commit may have landed all the same (its answer lost): an actor that could not reload is replaced
      // at its next use, never kept with the state from before.
      await actor.reload().catch((reloadErr: unknown) => this.#deps.logger.warn({ err: reloadErr, correlation_id: correlation }, "reloading the actor after a failed commit failed too; it is loaded afresh at its next use"));
      if (err instanceof StaleWriteError) throw errors.unavailable("the aggregate changed concurrently; retry");
      if (err instanceof FencedError) throw errors.unavailable("the aggregate's partition moved to another instance; retry");
      if (isUniqueViolation(err)) {
        // The same key committed meanwhile by another run of the command (two actors of one aggregate for a
        // moment: a partition lost and taken back while this one was busy, and the client's retry made a new
        // one): the first reply, as for any repeat of the key — not `conflict`, which was answered for a
        // keyed no-op retried then (idempotency audit).
        const seen = req.idempotencyKey ? await this.#deps.repo.findIdempotencyKey(m.aggregateType, req.aggregateId, req.idempotencyKey).catch(() => undefined) : undefined;
        const stored = this.#storedReply(seen, req, print);
        if (stored) return stored;
        throw errors.conflict("a unique value is already taken");
      }
      // A commit whose outcome is unknown (it may have landed) keeps its own error line, with the correlation id to find it by.
      if (isTransientFailure(err) && !(err instanceof CommitOutcomeUnknown)) {
        // The storage's own state (full, locked, out of reach): the same for every command meanwhile, said once a
        // minute with the count, not as an error line with its stack per command (written to that full disk).
        this.#commitsUnavailable++;
        if (this.#sayCommitsUnavailable()) {
          this.#deps.logger.warn({ err, correlation_id: correlation, unavailable_so_far: this.#commitsUnavailable }, "commit failed: storage unavailable, answered unavailable (said at most once a minute)");
        }
      } else {
        this.#deps.logger.error({ err, correlation_id: correlation }, "commit failed");
      }
      throw errors.unavailable("storage is unavailable; retry");
    }
    endSpan(committing);
    this.#stages(enqueued, started, prepared, performance.now());
    actor.state = state;
    actor.version = version;
    return reply;
  }

  // The reply stored under the request's Idempotency-Key, when the same command made it; `conflict` when another
  // command did; undefined when nothing is stored.
  #storedReply(seen: { fingerprint: string; reply: string } | undefined, req: CommandRequest, print: string): CommandSuccess | undefined {
    if (!seen) return undefined;
    if (seen.fingerprint !== print) throw errors.conflict("Idempotency-Key was used for a different command", { idempotency_key: req.idempotencyKey });
    return JSON.parse(seen.reply) as CommandSuccess;
  }

  // Tells the stages' observer (if any) a command's times, from performance.now() readings; `committed` absent when it wrote nothing.
  #stages(enqueued: number | undefined, started: number, prepared: number, committed: number | undefined): void {
    this.#deps.stages?.({ mailbox: enqueued === undefined ? 0 : (started - enqueued) / 1000, prepare: (prepared - started) / 1000, commit: committed === undefined ? undefined : (committed - prepared) / 1000 });
  }

  #envelope(m: AggregateModule, aggregateId: string, version: number, e: DomainEvent, now: string, correlation: string, causation: string): EventWrite {
    const envelope = {
      event_id: uuidv7(),
      event_type: e.event_type,
      event_version: EventVersions[e.event_type],
      occurred_on: now,
      aggregate_type: m.aggregateType,
      aggregate_id: aggregateId,
      aggregate_version: version,
      correlation_id: correlation,
      causation_id: causation,
      payload: e.payload,
    };
    // A decider bug must never reach the wire: what it chose of every event (the type and the payload) is
    // checked against the contract; the other fields are this function's own (decidedEventProblem says why
    // the whole envelope's schema is not run here).
    const problem = decidedEventProblem(m.context, e);
    if (problem !== undefined) throw new Error(`decider emitted an invalid ${e.event_type}: ${problem}`);
    // The write's own fields only, as one literal: a spread of the envelope with two more fields took a
    // second backing store, and its aggregate_type and aggregate_id (the write's already) crossed to the
    // write worker with every event.
    return {
      event_id: envelope.event_id,
      event_type: e.event_type,
      event_version: envelope.event_version,
      occurred_on: now,
      aggregate_version: version,
      correlation_id: correlation,
      causation_id: causation,
      payload: e.payload,
      subject: eventSubject(m.context, e.event_type, aggregateId),
      body: encodeMsgPack(envelope),
    };
  }

  async #asNerveError(err: unknown, actor: Actor, req: CommandRequest, commandId: string): Promise<NerveError> {
    if (err instanceof NerveError) return err;
    // The facts' reads (other aggregates' states, an email's owner) met a storage outage or a partition's
    // move: retry, as at commit (was: `internal`, logged as a bug, and a process manager's event counted
    // towards the dead letters). The command changed nothing; its actor's state is untouched.
    if (isTransientFailure(err)) {
      this.#factsUnavailable++;
      if (this.#sayFactsUnavailable()) {
        this.#deps.logger.warn({ err, command: req.type, aggregate_id: req.aggregateId, unavailable_so_far: this.#factsUnavailable }, "a command's facts could not be read: answered unavailable (said at most once a minute)");
      }
      return errors.unavailable(`${req.type} could not be decided now (${transientReason(err)}); retry`);
    }
    // A bug: fail this command, reload the actor from storage, leave every other actor alone. Logged here,
    // once, with the correlation id the events would have carried (the header's, else the command id),
    // which the reply names so the caller can point at this line (CONTRACT.md §3: internal).
    const correlation_id = req.correlationId ?? commandId;
    this.#deps.logger.error({ err, command: req.type, aggregate_id: req.aggregateId, correlation_id, command_id: commandId }, "decider failed");
    await actor.reload().catch(() => undefined);
    return errors.internal(`${req.type} failed unexpectedly`, err, { correlation_id });
  }
}

/**
 * `req` in a new trace: `{ ...req, traceparent, tracestate: undefined }` written out field by field, one
 * object of a fixed shape (a spread that then adds or overwrites fields took a second backing store).
 */
function withTrace(req: CommandRequest, traceparent: string): CommandRequest {
  return {
    context: req.context,
    type: req.type,
    aggregateId: req.aggregateId,
    body: req.body,
    idempotencyKey: req.idempotencyKey,
    correlationId: req.correlationId,
    causationId: req.causationId,
    traceparent,
    tracestate: undefined,
  };
}

function isUniqueViolation(err: unknown): boolean {
  const text = `${(err as { code?: string })?.code ?? ""} ${(err as Error)?.message ?? ""}`;
  return /UNIQUE constraint failed|SQLITE_CONSTRAINT|23505|duplicate key/i.test(text);
}
