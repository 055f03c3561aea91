/** `err` and the errors of its `cause` chain, a few links down (what the questions asked of a failure look through). */
export function* causes(err: unknown): Generator<Error> {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = (e as { cause?: unknown }).cause, depth++) yield e;
}
