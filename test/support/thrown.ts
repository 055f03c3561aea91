/** Catching the contract's errors in tests. */
import { expect } from "vitest";
import { NerveError } from "../../contracts/index.js";

/** Runs `fn` and returns the NerveError it throws (fails the test when it does not throw one). */
export function thrown(fn: () => unknown): NerveError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NerveError);
    return err as NerveError;
  }
  throw new Error("expected a NerveError, nothing was thrown");
}
