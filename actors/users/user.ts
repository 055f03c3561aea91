/** The User aggregate: registration, profile, e-mail (CONTRACT.md §2–§3). */
import { domainEvent, errors, normaliseEmail, type DomainEvent, type ProfilePatch } from "../../contracts/index.js";
import type { Decider } from "../decider.js";

/** The profile fields; null when unset. */
export type Profile = {
  display_name: string | null;
  bio: string | null;
  avatar_url: string | null;
  locale: string | null;
  timezone: string | null;
};

/** A user's state. */
export type UserState = { user_id: string; email: string; name: string; profile_data: Profile };

/** Facts the runtime supplies: who holds an e-mail address now (for uniqueness across users). */
export type UserFacts = { emailOwner?: string | null };

type UserCommand = "RegisterUser" | "UpdateUserProfile" | "ChangeUserEmail";
type UserEvent = "UserRegistered" | "UserProfileUpdated" | "UserEmailChanged";

const emptyProfile = (): Profile => ({ display_name: null, bio: null, avatar_url: null, locale: null, timezone: null });

function assertEmailFree(email: string, userId: string, facts: UserFacts): void {
  if (facts.emailOwner && facts.emailOwner !== userId) throw errors.conflict("email is already taken", { email });
}

/** The User decider. */
export const userDecider: Decider<UserState, UserCommand, UserEvent, UserFacts> = {
  aggregateType: "User",
  commands: ["RegisterUser", "UpdateUserProfile", "ChangeUserEmail"],

  decide(command, state, facts) {
    const id = command.aggregate_id;
    switch (command.type) {
      case "RegisterUser": {
        if (state) throw errors.conflict(`user ${id} already exists`);
        const email = normaliseEmail(command.body.email);
        assertEmailFree(email, id, facts);
        return [domainEvent("UserRegistered", { user_id: id, email, name: command.body.name })];
      }
      case "UpdateUserProfile": {
        if (!state) throw errors.notFound(`user ${id} does not exist`);
        const changed: ProfilePatch = {};
        for (const [key, value] of Object.entries(command.body.profile_data) as [keyof Profile, string | null | undefined][]) {
          if (value !== undefined && state.profile_data[key] !== value) changed[key] = value;
        }
        if (Object.keys(changed).length === 0) return [];
        return [domainEvent("UserProfileUpdated", { user_id: id, profile_data: changed })];
      }
      case "ChangeUserEmail": {
        if (!state) throw errors.notFound(`user ${id} does not exist`);
        const email = normaliseEmail(command.body.new_email);
        if (email === state.email) return [];
        assertEmailFree(email, id, facts);
        return [domainEvent("UserEmailChanged", { user_id: id, old_email: state.email, new_email: email })];
      }
    }
  },

  evolve(state, event: DomainEvent<UserEvent>) {
    switch (event.event_type) {
      case "UserRegistered":
        return { user_id: event.payload.user_id, email: event.payload.email, name: event.payload.name, profile_data: emptyProfile() };
      case "UserProfileUpdated":
        return { ...state!, profile_data: { ...state!.profile_data, ...event.payload.profile_data } };
      case "UserEmailChanged":
        return { ...state!, email: event.payload.new_email };
    }
  },
};

/** The GetUser view of a user. */
export const userView = (s: UserState, version: number) => ({ ...s, profile_data: { ...s.profile_data }, version });
