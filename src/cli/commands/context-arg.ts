/** The `<context>` and `<id>` arguments of history and send, checked against the contract. */
import { CONTEXTS, ID_PATTERN, type Context } from "../../../contracts/index.js";
import { unknownName, usageError } from "../cli-error.js";

/** The context named by an argument; an unknown one is a usage error listing the known. */
export function contextArg(name: string, command: string): Context {
  if (!(CONTEXTS as readonly string[]).includes(name)) throw unknownName("context", name, CONTEXTS, command);
  return name as Context;
}

/** An aggregate id argument; one that is not a safe subject token is a usage error. */
export function idArg(id: string, command: string): string {
  if (!ID_PATTERN.test(id)) throw usageError(`an aggregate id matches ${ID_PATTERN.source}; not ${JSON.stringify(id)}`, command);
  return id;
}
