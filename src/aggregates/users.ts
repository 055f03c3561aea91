/** Hosting of the User aggregate: e-mail uniqueness through an index written in the same transaction. */
import { normaliseEmail, type Command, type DomainEvent } from "../../contracts/index.js";
import { userDecider, userView, type UserFacts, type UserState } from "../../actors/users/index.js";
import type { AggregateModule } from "../runtime/index.js";

function emailOf(command: Command): string | undefined {
  if (command.type === "RegisterUser") return command.body.email;
  if (command.type === "ChangeUserEmail") return command.body.new_email;
  return undefined;
}

/** The Users context. */
export const usersModule: AggregateModule<UserState, UserFacts> = {
  context: "users",
  aggregateType: "User",
  decider: userDecider,
  async facts(command, _state, lookups) {
    const email = emailOf(command);
    return email ? { emailOwner: await lookups.repo.emailOwner(normaliseEmail(email)) } : {};
  },
  // The unique key on user_emails settles races the facts lookup cannot see: the loser gets `conflict`.
  extra(aggregateId, events: DomainEvent[]) {
    return events.flatMap((e) => {
      if (e.event_type === "UserRegistered") return [{ sql: "insert into user_emails (email, user_id) values (?, ?)", params: [e.payload.email, aggregateId] }];
      if (e.event_type === "UserEmailChanged")
        return [
          { sql: "delete from user_emails where email = ? and user_id = ?", params: [e.payload.old_email, aggregateId] },
          { sql: "insert into user_emails (email, user_id) values (?, ?)", params: [e.payload.new_email, aggregateId] },
        ];
      return [];
    });
  },
  view: (state, version) => userView(state, version),
};
