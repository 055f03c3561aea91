import { describe, expect, it } from "vitest";
import { domainEvent, type Money } from "../../../contracts/index.js";
import { courseDecider, courseView } from "../../../actors/courses/index.js";
import { deciderSpec } from "../../support/decider-spec.js";

const active = { policy: { status: "active" as const } };
const spec = deciderSpec(courseDecider, { facts: active });
const id = "c1";
const eur = (amount: number): Money => ({ amount, currency: "EUR" });
const created = domainEvent("CourseCreated", { course_id: id, title: "TypeScript", instructor_id: "i1", policy_id: "p1" });
const priced = domainEvent("CourseUpdated", { course_id: id, title: "TypeScript", description: "Types", price: eur(4900) });
const deprecated = domainEvent("CourseDeprecated", { course_id: id, title: "TypeScript" });

type CreateBody = { title: string; instructor_id: string; policy_id: string; description?: string; price?: Money | null };
const create = (extra: Partial<CreateBody> = {}) => ({
  type: "CreateCourse" as const,
  aggregate_id: id,
  body: { title: "TypeScript", instructor_id: "i1", policy_id: "p1", ...extra },
});
const update = (body: { title?: string; description?: string; price?: Money | null }) => ({ type: "UpdateCourse" as const, aggregate_id: id, body });
const changePolicy = (new_policy_id: string) => ({ type: "ChangeCoursePolicy" as const, aggregate_id: id, body: { new_policy_id } });
const deprecate = { type: "DeprecateCourse" as const, aggregate_id: id, body: {} };

describe("Course: CreateCourse", () => {
  it("creates a course without description or price: CourseCreated only, not for sale", () => {
    const state = spec.given([]).when(create()).then([created]);
    expect(state).toMatchObject({ description: "", price: null, status: "active" });
  });

  it("follows with CourseUpdated carrying the full values when a price is given", () => {
    spec.given([]).when(create({ price: eur(4900) })).then([created, domainEvent("CourseUpdated", { course_id: id, title: "TypeScript", description: "", price: eur(4900) })]);
  });

  it("follows with CourseUpdated when a description is given", () => {
    const state = spec
      .given([])
      .when(create({ description: "Types" }))
      .then([created, domainEvent("CourseUpdated", { course_id: id, title: "TypeScript", description: "Types", price: null })]);
    expect(state?.description).toBe("Types");
  });

  it("is a conflict when the course exists already", () => {
    spec.given([created]).when(create()).thenThrows("conflict", "c1");
  });

  it("refuses a policy that does not exist", () => {
    const err = spec.given([]).when(create(), { policy: null }).thenThrows("rule_violated", "policy p1 does not exist");
    expect(err.details).toEqual({ policy_id: "p1" });
  });

  it("refuses a deprecated policy", () => {
    spec.given([]).when(create(), { policy: { status: "deprecated" } }).thenThrows("rule_violated", "p1 is deprecated");
  });

  it("is internal when the runtime did not look the policy up", () => {
    deciderSpec(courseDecider).given([]).when(create()).thenThrows("internal", "policy");
  });
});

describe("Course: UpdateCourse", () => {
  it("is not_found for an unknown course", () => {
    spec.given([]).when(update({ title: "x" })).thenThrows("not_found");
  });

  it("emits the full current values when one changes", () => {
    spec
      .given([created, priced])
      .when(update({ title: "TypeScript 2" }))
      .then([domainEvent("CourseUpdated", { course_id: id, title: "TypeScript 2", description: "Types", price: eur(4900) })]);
  });

  it("takes a course off sale with a null price", () => {
    const state = spec
      .given([created, priced])
      .when(update({ price: null }))
      .then([domainEvent("CourseUpdated", { course_id: id, title: "TypeScript", description: "Types", price: null })]);
    expect(state?.price).toBeNull();
  });

  it("sees a new currency as a change", () => {
    spec
      .given([created, priced])
      .when(update({ price: { amount: 4900, currency: "USD" } }))
      .then([domainEvent("CourseUpdated", { course_id: id, title: "TypeScript", description: "Types", price: { amount: 4900, currency: "USD" } })]);
  });

  it("does nothing when nothing changes", () => {
    spec.given([created, priced]).when(update({ title: "TypeScript", description: "Types", price: eur(4900) })).thenNothingHappened();
    spec.given([created]).when(update({ price: null, description: "" })).thenNothingHappened();
  });

  it("refuses to update a deprecated course", () => {
    spec.given([created, deprecated]).when(update({ title: "x" })).thenThrows("rule_violated", "deprecated");
  });
});

describe("Course: DeprecateCourse", () => {
  it("is not_found for an unknown course", () => {
    spec.given([]).when(deprecate).thenThrows("not_found");
  });

  it("deprecates an active course", () => {
    expect(spec.given([created, priced]).when(deprecate).then([deprecated])?.status).toBe("deprecated");
  });

  it("does nothing the second time", () => {
    spec.given([created, deprecated]).when(deprecate).thenNothingHappened();
  });
});

describe("Course: ChangeCoursePolicy", () => {
  it("is not_found for an unknown course", () => {
    spec.given([]).when(changePolicy("p2")).thenThrows("not_found");
  });

  it("moves the course to another active policy", () => {
    const state = spec
      .given([created])
      .when(changePolicy("p2"))
      .then([domainEvent("CoursePolicyChanged", { course_id: id, old_policy_id: "p1", new_policy_id: "p2" })]);
    expect(state?.policy_id).toBe("p2");
  });

  it("does nothing for the policy it already follows, without needing facts", () => {
    deciderSpec(courseDecider).given([created]).when(changePolicy("p1")).thenNothingHappened();
  });

  it("refuses a policy that does not exist", () => {
    spec.given([created]).when(changePolicy("p9"), { policy: null }).thenThrows("rule_violated", "policy p9 does not exist");
  });

  it("refuses a deprecated policy", () => {
    spec.given([created]).when(changePolicy("p2"), { policy: { status: "deprecated" } }).thenThrows("rule_violated", "p2 is deprecated");
  });

  it("refuses to move a deprecated course", () => {
    spec.given([created, deprecated]).when(changePolicy("p2")).thenThrows("rule_violated", "course c1 is deprecated");
  });
});

describe("Course: view", () => {
  it("shows the course as GetCourse returns it", () => {
    const { state } = spec.given([created, priced, deprecated]);
    expect(courseView(state!, 3)).toEqual({
      course_id: id,
      title: "TypeScript",
      description: "Types",
      price: eur(4900),
      instructor_id: "i1",
      policy_id: "p1",
      status: "deprecated",
      version: 3,
    });
  });
});
