import { describe, expect, it } from "vitest";
import { AdminSubjects, ConsumerOpSubjects, ConsumerOps, instanceAdminSubject } from "../../src/api/admin-subjects.js";

describe("an instance's own admin subjects", () => {
  it("are one token per instance inside nerve.admin.> whatever its id holds, and two ids never share one", () => {
    expect(instanceAdminSubject("nerve-0", ConsumerOps.Replay)).toBe("nerve.admin.instance.nerve-0.replay");
    // A default id is `<hostname>-<pid>`; a hostname may hold dots, which would split (or empty) tokens.
    for (const id of ["web.example.com-12", ".a", "a..b", "a:b_c-d"]) {
      const subject = instanceAdminSubject(id, ConsumerOps.ReplayStatus);
      expect(subject.split("."), id).toHaveLength(5);
      expect(subject.split(".").every((t) => t.length > 0), id).toBe(true);
    }
    expect(instanceAdminSubject("a.b", ConsumerOps.Replay)).not.toBe(instanceAdminSubject("a_b", ConsumerOps.Replay));
  });

  it("name the same operations as the service's subjects", () => {
    for (const op of Object.values(ConsumerOps)) expect(ConsumerOpSubjects[op]).toBe(`nerve.admin.${op}`);
    expect(Object.values(ConsumerOpSubjects).every((s) => (Object.values(AdminSubjects) as string[]).includes(s))).toBe(true);
  });
});
