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
