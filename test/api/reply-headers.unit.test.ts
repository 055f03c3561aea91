/** A success reply's headers (okHeaders: one block per content type and instance): what nats-core's headers gave, byte for byte. */
import { describe, expect, it } from "vitest";
import { okHeaders, replyHeaders } from "../../src/api/wire.js";
import { ContentTypes } from "../../contracts/index.js";

const wire = (h: unknown) => Buffer.from((h as { encode(): Uint8Array }).encode()).toString("utf8");

describe("okHeaders", () => {
  it("writes the block replyHeaders wrote, with and without the instance, for both content types", () => {
    for (const ct of [ContentTypes.MsgPack, ContentTypes.Json]) {
      for (const instance of [undefined, "", "nerve-7c9f-2"]) expect(wire(okHeaders(ct, instance))).toBe(wire(replyHeaders(ct, instance)));
    }
    expect(wire(okHeaders(ContentTypes.Json, "nerve-a"))).toBe("NATS/1.0\r\nContent-Type: application/json\r\nNerve-Instance: nerve-a\r\n\r\n");
  });

  it("gives each reply headers of its own: a change to one (as respondError makes) reaches neither the next nor the shared block", () => {
    const first = okHeaders(ContentTypes.MsgPack, "nerve-b");
    first.set("Nats-Service-Error-Code", "409");
    expect(wire(first)).toContain("Nats-Service-Error-Code: 409\r\n");
    expect(first.get("Nerve-Instance")).toBe("nerve-b");
    const next = okHeaders(ContentTypes.MsgPack, "nerve-b");
    expect(wire(next)).toBe("NATS/1.0\r\nContent-Type: application/msgpack\r\nNerve-Instance: nerve-b\r\n\r\n");
    expect(next.has("Nats-Service-Error-Code")).toBe(false);
  });

  it("leaves an instance name nats-core would refuse to nats-core, which refuses it", () => {
    expect(() => okHeaders(ContentTypes.Json, "bad\r\nname")).toThrow(/cannot contain/);
  });
});
