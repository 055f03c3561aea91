/** `nerve status` against an instance that answers but cannot read its status (its database failing). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { headers } from "@nats-io/nats-core";
import { encodeJson, errorReply, errors } from "../../contracts/index.js";
import { AdminSubjects } from "../../src/api/admin-subjects.js";
import { INSTANCE_HEADER } from "../../src/api/wire.js";
import { gatherInstances } from "../../src/cli/status-report.js";
import { startNatsServer, type NatsServerHandle } from "../support/index.js";

let nats: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, noAsyncTraces: true });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe("gathering the instances' status", () => {
  it("names an instance whose answer is an error (was: left out, as if absent: its partitions unowned, its consumers nowhere)", async () => {
    const sub = nc.subscribe(AdminSubjects.Status, {
      callback: (_err, msg) => {
        const h = headers();
        h.set(INSTANCE_HEADER, "nerve-b");
        msg.respond(encodeJson(errorReply(errors.unavailable("could not read the instance's status: canceling statement due to statement timeout"))), { headers: h });
      },
    });
    await nc.flush();
    try {
      const failures: string[] = [];
      expect(await gatherInstances(nc, 1000, failures)).toEqual([]);
      expect(failures).toEqual(["nerve-b answered but could not read its status: could not read the instance's status: canceling statement due to statement timeout"]);
    } finally {
      sub.unsubscribe();
    }
  });

  it("takes no responders for no instance, without a failure", async () => {
    const failures: string[] = [];
    expect(await gatherInstances(nc, 500, failures)).toEqual([]);
    expect(failures).toEqual([]);
  });
});
