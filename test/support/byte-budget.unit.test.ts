/**
 * withinRoom, with the API's own reply room: a list that fits in one reply is answered whole, in either
 * encoding, even with no byte to spare; one that does not is cut to a prefix whose reply fits.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ContentTypes, encode } from "../../contracts/index.js";
import { fitsOneMessage, replyRoom } from "../../src/api/index.js";
import { withinRoom } from "../../src/support/byte-budget.js";

describe("withinRoom", () => {
  it("keeps every item of a reply that fits, and a prefix that fits of one that does not", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ id: fc.string({ maxLength: 8 }), text: fc.string({ unit: "binary", maxLength: 400 }), n: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })) }), { maxLength: 40 }),
        fc.constantFrom(ContentTypes.Json, ContentTypes.MsgPack),
        fc.integer({ min: 4096 + 64, max: 4096 + 8_000 }),
        (items, ct, maxPayload) => {
          const reply = (list: unknown[]) => encode(ct, { ok: true, result: { items: list } }).length;
          const kept = withinRoom(items, replyRoom("SearchCatalog", ct, maxPayload), (fit) => ({ items: fit }));
          expect(kept).toEqual(items.slice(0, kept.length));
          expect(fitsOneMessage(reply(kept), maxPayload)).toBe(true);
          if (fitsOneMessage(reply(items), maxPayload)) expect(kept).toHaveLength(items.length);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("answers whole a list whose reply fills the room to the byte", () => {
    for (const ct of [ContentTypes.Json, ContentTypes.MsgPack]) {
      const items = Array.from({ length: 20 }, (_, i) => ({ id: `c${i}`, text: "x".repeat(100) }));
      const exact = encode(ct, { ok: true, result: { items } }).length + 4096;
      expect(withinRoom(items, replyRoom("SearchCatalog", ct, exact), (fit) => ({ items: fit }))).toHaveLength(20);
      expect(withinRoom(items, replyRoom("SearchCatalog", ct, exact - 1), (fit) => ({ items: fit }))).toHaveLength(19);
    }
  });
});
