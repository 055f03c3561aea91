import { describe, expect, it } from "vitest";
import {
  assertSafeId,
  commandSubject,
  COMMAND_TYPES,
  CommandDefinitions,
  Consumers,
  contextOf,
  CONTEXTS,
  Contexts,
  eventSubject,
  eventTypeOfSubject,
  EVENT_TYPES,
  EventContexts,
  Headers,
  parseCommandSubject,
  querySubject,
  QUERY_TYPES,
  QueryDefinitions,
  SERVICE_NAME,
  Streams,
} from "../../contracts/index.js";
import { thrown } from "../support/thrown.js";

const unsafeIds = ["a.b", "*", ">", "a b", "", "a".repeat(65), "a\tb", "ü", "a/b"];

describe("subject builders", () => {
  it("build the contract's subjects", () => {
    expect(eventSubject("orders", "OrderPaid", "ord-1")).toBe("events.orders.OrderPaid.ord-1");
    expect(commandSubject("users", "RegisterUser", "user_42")).toBe("cmd.users.RegisterUser.user_42");
    expect(querySubject("courses", "SearchCatalog")).toBe("query.courses.SearchCatalog");
    expect(eventSubject("access", "ProgressUpdated", "a".repeat(64))).toBe(`events.access.ProgressUpdated.${"a".repeat(64)}`);
  });

  it.each(EVENT_TYPES)("%s is published under its context's stream subjects", (type) => {
    const context = EventContexts[type];
    const subject = eventSubject(context, type, "agg-1");
    expect(subject).toBe(`events.${context}.${type}.agg-1`);
    expect(subject.startsWith(Streams[Contexts[context].stream].subjects.slice(0, -1))).toBe(true);
  });

  it.each(COMMAND_TYPES)("%s has a command subject that parses back", (type) => {
    const { context } = CommandDefinitions[type];
    const subject = commandSubject(context, type, "agg-1");
    expect(subject).toBe(`cmd.${context}.${type}.agg-1`);
    expect(parseCommandSubject(subject)).toEqual({ context, commandType: type, aggregateId: "agg-1" });
  });

  it.each(QUERY_TYPES)("%s has a query subject", (type) => {
    const { context } = QueryDefinitions[type];
    expect(querySubject(context, type)).toBe(`query.${context}.${type}`);
  });

  it.each(unsafeIds)("refuse the unsafe aggregate id %j with invalid_request", (id) => {
    for (const build of [() => eventSubject("users", "UserRegistered", id), () => commandSubject("users", "RegisterUser", id), () => assertSafeId(id)]) {
      const err = thrown(build);
      expect(err.code).toBe("invalid_request");
      expect(err.status).toBe(400);
    }
  });

  it.each(["orderPaid", "Order.Paid", "Order*", "", ">"])("refuse the type name %j", (name) => {
    expect(thrown(() => eventSubject("orders", name, "ord-1")).code).toBe("invalid_request");
    expect(thrown(() => commandSubject("orders", name, "ord-1")).code).toBe("invalid_request");
    expect(thrown(() => querySubject("orders", name)).code).toBe("invalid_request");
  });

  it("refuse a query context that is not lower-case letters", () => {
    for (const context of ["Users", "a.b", "*", ""]) expect(thrown(() => querySubject(context, "GetUser")).code).toBe("invalid_request");
  });

  it("assertSafeId returns a safe id unchanged and names the field in the details", () => {
    expect(assertSafeId("Ab_9-z")).toBe("Ab_9-z");
    expect(thrown(() => assertSafeId("a.b", "order_id")).details).toEqual({ order_id: "a.b" });
  });
});

describe("parseCommandSubject", () => {
  it.each(["events.users.UserRegistered.u1", "cmd.users.RegisterUser", "cmd.users.RegisterUser.u1.extra", "query.users.GetUser", ""])(
    "returns undefined for %j",
    (subject) => {
      expect(parseCommandSubject(subject)).toBeUndefined();
    },
  );
});

describe("streams, contexts and consumers", () => {
  const contract = {
    users: ["User", "EVENTS_USERS"],
    courses: ["Course", "EVENTS_COURSES"],
    policies: ["RefundPolicy", "EVENTS_POLICIES"],
    orders: ["Order", "EVENTS_ORDERS"],
    access: ["AccessRecord", "EVENTS_ACCESS"],
  } as const;

  it("has the contract's five contexts", () => {
    expect([...CONTEXTS].sort()).toEqual(Object.keys(contract).sort());
  });

  it.each(Object.entries(contract))("%s: aggregate %s, stream %s on events.<context>.>", (context, [aggregate, stream]) => {
    expect(Contexts[context as keyof typeof contract]).toEqual({ aggregate, stream });
    expect(Streams[stream]).toEqual({ name: stream, subjects: `events.${context}.>`, context });
    expect(contextOf(aggregate)).toBe(context);
  });

  it("has one stream per context and nothing else", () => {
    expect(Object.keys(Streams).sort()).toEqual(Object.values(contract).map(([, s]) => s).sort());
  });

  it("names the contract's durable consumers, and learner-progress (GetLearnerProgress's read model)", () => {
    expect(Object.values(Consumers).sort()).toEqual(
      ["analytics", "notifications", "security", "catalog", "search", "policy-sync", "access-grants", "certificates", "audit", "learner-progress"].sort(),
    );
  });

  it("names the service and the headers as the contract does", () => {
    expect(SERVICE_NAME).toBe("nerve");
    expect(Headers).toMatchObject({
      MsgId: "Nats-Msg-Id",
      ContentType: "Content-Type",
      EventType: "Event-Type",
      EventVersion: "Event-Version",
      IdempotencyKey: "Idempotency-Key",
      CorrelationId: "Correlation-Id",
      CausationId: "Causation-Id",
      ServiceErrorCode: "Nats-Service-Error-Code",
      ServiceError: "Nats-Service-Error",
    });
  });

  it("reads the event type out of an event subject, and nothing out of anything else", () => {
    for (const type of EVENT_TYPES) {
      expect(eventTypeOfSubject(eventSubject(EventContexts[type], type, "u-1_A"))).toBe(type);
    }
    for (const s of ["events.users.UserRegistered", "events.users.UserRegistered.", "events..UserRegistered.u1", "events.users..u1", "events.users.UserRegistered.u1.x", "cmd.users.RegisterUser.u1", "event.users.UserRegistered.u1", "events", "", "events.users.>"]) {
      expect(eventTypeOfSubject(s), s).toBeUndefined();
    }
  });
});
