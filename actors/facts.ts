/** What the deciders share about facts: the runtime's lookups outside the aggregate. */
import { errors } from "../contracts/index.js";

/** Returns a fact the command needs; a missing one is a runtime bug (`internal`), never a business answer. */
export function required<T>(fact: T | undefined, name: string): T {
  if (fact === undefined) throw errors.internal(`the runtime did not supply the fact "${name}"`);
  return fact;
}
