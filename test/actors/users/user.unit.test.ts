import { describe, expect, it } from "vitest";
import { domainEvent } from "../../../contracts/index.js";
import { userDecider } from "../../../actors/users/index.js";
import { deciderSpec } from "../../support/decider-spec.js";

const spec = deciderSpec(userDecider);
const now = "2026-02-01T09:00:00.000Z";
const registered = domainEvent("UserRegistered", { user_id: "u1", email: "ann@example.com", name: "Ann" });

describe("User: RegisterUser", () => {
  it("registers a new user with the e-mail lower-cased", () => {
    spec
      .given([])
      .when({ type: "RegisterUser", aggregate_id: "u1", body: { email: "Ann@Example.COM", name: "Ann" }, now })
      .then([registered]);
  });

  it("refuses a user id that exists already", () => {
    spec.given([registered]).when({ type: "RegisterUser", aggregate_id: "u1", body: { email: "x@example.com", name: "X" }, now }).thenThrows("conflict", "u1");
  });

  it("refuses an address another user holds, whatever its case", () => {
    const err = spec
      .given([])
      .when({ type: "RegisterUser", aggregate_id: "u2", body: { email: "ANN@example.com", name: "Ann 2" }, now }, { emailOwner: "u1" })
      .thenThrows("conflict", "email");
    expect(err.details).toEqual({ email: "ann@example.com" });
  });

  it("accepts an address nobody holds", () => {
    spec.given([]).when({ type: "RegisterUser", aggregate_id: "u1", body: { email: "ann@example.com", name: "Ann" }, now }, { emailOwner: null }).then([registered]);
  });
});

describe("User: UpdateUserProfile", () => {
  const withName = domainEvent("UserProfileUpdated", { user_id: "u1", profile_data: { display_name: "Annie" } });

  it("is not_found for an unknown user", () => {
    spec.given([]).when({ type: "UpdateUserProfile", aggregate_id: "u1", body: { profile_data: { bio: "hi" } }, now }).thenThrows("not_found");
  });

  it("emits only the changed fields and merges them into the profile", () => {
    const state = spec
      .given([registered, withName])
      .when({ type: "UpdateUserProfile", aggregate_id: "u1", body: { profile_data: { display_name: "Annie", bio: "Teacher", locale: "en-GB" } }, now })
      .then([domainEvent("UserProfileUpdated", { user_id: "u1", profile_data: { bio: "Teacher", locale: "en-GB" } })]);
    expect(state?.profile_data).toEqual({ display_name: "Annie", bio: "Teacher", avatar_url: null, locale: "en-GB", timezone: null });
  });

  it("clears a field with null", () => {
    const state = spec
      .given([registered, withName])
      .when({ type: "UpdateUserProfile", aggregate_id: "u1", body: { profile_data: { display_name: null } }, now })
      .then([domainEvent("UserProfileUpdated", { user_id: "u1", profile_data: { display_name: null } })]);
    expect(state?.profile_data.display_name).toBeNull();
  });

  it("does nothing when no field changes", () => {
    spec.given([registered, withName]).when({ type: "UpdateUserProfile", aggregate_id: "u1", body: { profile_data: { display_name: "Annie", bio: null } }, now }).thenNothingHappened();
  });
});

describe("User: ChangeUserEmail", () => {
  it("is not_found for an unknown user", () => {
    spec.given([]).when({ type: "ChangeUserEmail", aggregate_id: "u1", body: { new_email: "a@b.co" }, now }).thenThrows("not_found");
  });

  it("changes the address, lower-cased, naming the old one", () => {
    const state = spec
      .given([registered])
      .when({ type: "ChangeUserEmail", aggregate_id: "u1", body: { new_email: "Ann@New.example" }, now }, { emailOwner: null })
      .then([domainEvent("UserEmailChanged", { user_id: "u1", old_email: "ann@example.com", new_email: "ann@new.example" })]);
    expect(state?.email).toBe("ann@new.example");
  });

  it("does nothing for the same address in another case", () => {
    spec.given([registered]).when({ type: "ChangeUserEmail", aggregate_id: "u1", body: { new_email: "ANN@example.com" }, now }, { emailOwner: "u1" }).thenNothingHappened();
  });

  it("refuses an address another user holds", () => {
    spec.given([registered]).when({ type: "ChangeUserEmail", aggregate_id: "u1", body: { new_email: "Bob@Example.com" }, now }, { emailOwner: "u2" }).thenThrows("conflict", "taken");
  });
});
