import { describe, expect, it } from "vitest";
import { send } from "../../../src/cli/commands/send.js";

const check = (values: Record<string, string>) => () => send.check!(["users", "RegisterUser", "u1"], values);

describe("send's header options", () => {
  it("counts a header's 128 characters as the service does, in code points", () => {
    // 128 emoji are 256 UTF-16 units: the service takes them, so the CLI must too.
    expect(check({ "idempotency-key": "😀".repeat(128) })).not.toThrow();
    expect(check({ "correlation-id": "é".repeat(128) })).not.toThrow();
    expect(check({ "idempotency-key": "😀".repeat(129) })).toThrow(/--idempotency-key is 1 to 128 printable characters/);
    expect(check({ "correlation-id": "k".repeat(129) })).toThrow(/--correlation-id is 1 to 128 printable characters/);
  });
});
