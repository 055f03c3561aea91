/** How an admin request's failure is answered: a NerveError as it is, anything else `internal` and logged. */
import { describe, expect, it } from "vitest";
import { errors } from "../../contracts/index.js";
import { adminFailure } from "../../src/api/admin-input.js";
import { captureLog } from "../support/index.js";

describe("adminFailure", () => {
  it("answers a NerveError as it is, logging nothing", () => {
    const log = captureLog("warn");
    const e = errors.notFound("no dead letter 5");
    expect(adminFailure(e, log.logger)).toBe(e);
    expect(log.errors()).toEqual([]);
  });

  it("answers a number PostgreSQL found beyond its column (22003) invalid_request, naming no SQL, logging nothing", () => {
    const log = captureLog("warn");
    const refused = Object.assign(new Error('select * from consumer_dead_letters where id > ? order by id limit ? - value "40000" is out of range for type smallint'), { code: "22003" });
    for (const err of [refused, new Error("wrapped", { cause: refused })]) {
      const answered = adminFailure(err, log.logger);
      expect(answered.code).toBe("invalid_request");
      expect(answered.message).not.toMatch(/select|consumer_dead_letters|smallint/);
    }
    expect(log.errors()).toEqual([]);
  });

  it("answers the service's own failure internal, not invalid_request, and logs it", () => {
    const log = captureLog("warn");
    const answered = adminFailure(new Error("SQLITE_IOERR: disk I/O error"), log.logger);
    expect(answered.code).toBe("internal");
    expect(answered.message).toContain("SQLITE_IOERR");
    expect(log.errors()).toHaveLength(1);
  });
});
