/** How the service process ends: what a supervisor (systemd, a container runtime) reads to decide on a restart. */
export const ServiceExitCodes = {
  /** Stopped in order on SIGTERM or SIGINT. */
  Stopped: 0,
  /**
   * Failed: a start that could not complete (NATS or the database unreachable, a stream or external
   * consumer in conflict, the HTTP port taken), an uncaught exception, or a shutdown past its bound.
   * A restart may help: what was missing may be back.
   */
  Failed: 1,
  /** The configuration is invalid (each bad variable is named): no restart helps until it is fixed. */
  BadConfiguration: 2,
} as const;
