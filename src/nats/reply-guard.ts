/**
 * Which reply subjects Nerve answers to. A request names its reply subject, and Nerve publishes its
 * answer there with the service user's rights — which cover the JetStream API and Nerve's own subjects.
 * A caller allowed only `cmd.>`, `query.>` and `$SRV.>` could otherwise have Nerve "answer" into
 * `$JS.API.STREAM.PURGE.EVENTS_ORDERS` (an empty purge request, JetStream reads it: every event gone),
 * into `events.users.…` (a forged message in a stream), or into Nerve's own subjects. Such a request is
 * dropped unanswered (the caller could not receive an answer there anyway), and counted.
 */
import type { Msg, NatsConnection, Subscription, SubscriptionOptions } from "@nats-io/nats-core";

// Subjects Nerve itself publishes or serves: an answer has no business there.
const NERVE_SUBJECTS = /^(events|cmd|pcmd|query|nerve)\./;

/** Whether Nerve may publish an answer to `reply`: not a `$…` subject (JetStream API, system, services, KV), nor one of Nerve's own. */
export function acceptableReply(reply: string): boolean {
  return !reply.startsWith("$") && !NERVE_SUBJECTS.test(reply);
}

/**
 * `nc` whose callback subscriptions never see a message with a reply subject Nerve must not answer to
 * (`refused` is told instead). For what serves requests from callers outside Nerve: the `nerve` NATS
 * service (its endpoints and the `$SRV` discovery handlers of @nats-io/services) and the partitions'
 * `pcmd.<p>.>` subscriptions.
 */
export function replyGuarded(nc: NatsConnection, refused: (msg: Msg) => void): NatsConnection {
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === "subscribe") {
        return (subject: string, opts?: SubscriptionOptions): Subscription => {
          const callback = opts?.callback;
          if (!callback) return target.subscribe(subject, opts);
          return target.subscribe(subject, {
            ...opts,
            callback: (err, msg) => {
              if (!err && msg.reply && !acceptableReply(msg.reply)) return refused(msg);
              callback(err, msg);
            },
          });
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
