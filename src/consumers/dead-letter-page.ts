/** The admin API's pages of dead letters (DeadLetters.page), apart so that the CLI loads nothing else. */
import type { DeadLetter } from "./dead-letters.js";

/** One page of dead letters: `next` is the `after` of the following page, null after the last. */
export interface DeadLetterPage {
  items: DeadLetter[];
  next: number | null;
}

/**
 * Most dead letters per page, and most bytes of them as JSON: one reply must stay under NATS's
 * max_payload (1 MiB by default), and 2,000 letters of a 1 KiB event each did not fit in one.
 */
export const DEAD_LETTER_PAGE = { defaultLimit: 100, maxLimit: 1_000, maxBytes: 256 * 1024 } as const;
