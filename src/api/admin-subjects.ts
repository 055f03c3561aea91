/** Admin subjects (the service user only; clients have no permission for them): a file of its own, light enough for the CLI to import. */
export const AdminSubjects = {
  Lag: "nerve.admin.lag",
  Replay: "nerve.admin.replay",
  ReplayStatus: "nerve.admin.replay-status",
  DeadLetters: "nerve.admin.dead-letters",
  RetryDeadLetter: "nerve.admin.retry-dead-letter",
  /** Answered by every instance for itself (no queue group): {@link InstanceStatus}. */
  Status: "nerve.admin.status",
} as const;

/** The admin requests about one durable consumer: they run where the consumer runs. */
export const ConsumerOps = {
  Replay: "replay",
  ReplayStatus: "replay-status",
  RetryDeadLetter: "retry-dead-letter",
} as const;

/** One of {@link ConsumerOps}. */
export type ConsumerOp = (typeof ConsumerOps)[keyof typeof ConsumerOps];

/** The service's subject of each {@link ConsumerOps} request (queue group: any instance may take it). */
export const ConsumerOpSubjects: Record<ConsumerOp, string> = {
  [ConsumerOps.Replay]: AdminSubjects.Replay,
  [ConsumerOps.ReplayStatus]: AdminSubjects.ReplayStatus,
  [ConsumerOps.RetryDeadLetter]: AdminSubjects.RetryDeadLetter,
};

/**
 * The prefix of an instance's own subjects, `nerve.admin.instance.<instance>`: a plain subscription of
 * that instance alone (inside `nerve.admin.>`, so the service user's permissions already cover it).
 * An instance id may hold dots, which would split the token: each is written `~`, which no id holds.
 */
export function instanceAdminPrefix(instance: string): string {
  return `nerve.admin.instance.${instance.replaceAll(".", "~")}`;
}

/** An instance's own subject for `op`: `nerve.admin.instance.<instance>.<op>`. */
export function instanceAdminSubject(instance: string, op: ConsumerOp): string {
  return `${instanceAdminPrefix(instance)}.${op}`;
}
