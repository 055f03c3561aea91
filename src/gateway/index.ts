/**
 * The WebSocket gateway (CONTRACT.md §6): live access events for learners, resumable by cursor.
 *
 * - Source: EVENTS_ACCESS through an ordered consumer (access-feed.ts), never the command path, so
 *   any number of gateways, started with the service or on their own, push the same events.
 * - Cursor: the stream sequence, `s<base 36>` (cursor.ts): global, the same on every instance,
 *   unchanged by restarts.
 * - Buffers: per learner, the last 1,000 events or 24 h, within a global budget; warmed on start by
 *   replaying the last 24 h of the stream (event-log.ts), behind a port that already answers health
 *   and metrics (gateway.ts). Cursors they cannot serve get `reset`.
 * - Welcome: records folded from the stream, merged by version with GetLearnerProgress when it
 *   answers; a record whose grant is older than the replay takes the query's fields (session.ts,
 *   record-fields.ts, progress-query.ts).
 * - Auth: JWT checked before the upgrade, HS256 with the secret or RS256/ES256/EdDSA against a
 *   JWKS (auth.ts, jwks.ts); expiry enforced on live sockets (hub.ts).
 * - Slow clients: a byte budget on uWS's buffered amount and one on unwritten acks, 4408 with the
 *   last cursor (hub.ts).
 */
export { startGateway, type Gateway, type GatewayDeps } from "./gateway.js";
export { encodeCursor, decodeCursor } from "./cursor.js";
export { TokenVerifier, AuthError, signToken, tokenOf, type Identity, type TokenVerifierOptions } from "./auth.js";
export { openJwks, JwksUnavailableError, type KeySource, type JwksOptions } from "./jwks.js";
export { EventLog, LEARNER_EVENT_TYPES, ownString, type LogEntry, type RetentionOptions, type AccessRecordView } from "./event-log.js";
export { GatewayMetrics } from "./metrics.js";
export { loadUws, UwsUnavailableError } from "./uws.js";
export { progressPage } from "./page.js";
