/**
 * What one reader of an `AckPolicy.All` durable may acknowledge. Under that policy an ack of stream
 * sequence S acknowledges every delivery of the consumer with a stream sequence up to S — whoever holds
 * it. One ack per committed batch instead of one per event saves ~20 µs of machine CPU per event and
 * reader (bench 1c, "What the acks cost"), but it is safe only while every outstanding delivery below S
 * is this reader's own and committed. Otherwise the ack would settle events nobody applied: those of a
 * former holder that crashed or stalled (a zombie still pulling after losing its lease), or this
 * reader's own failures waiting for redelivery.
 *
 * So the floor is sent only while the reader is *clean*: every delivery the consumer made since a point
 * where nothing was outstanding reached this reader. JetStream numbers deliveries (the consumer
 * sequence) without gaps, redeliveries included, so a gap in what arrives means a delivery went
 * elsewhere. A reader starts clean when the durable had nothing outstanding; otherwise (a crashed
 * holder's deliveries, a gap) it holds its acks and asks the server until the outstanding deliveries
 * are exactly the ones it holds ({@link AckFloor.reconcile}). The durable must have no `max_deliver`:
 * the server would drop a delivery from its outstanding set without an ack and the counts would never
 * meet again. Pure bookkeeping: no I/O, the runner sends the acks and reads the consumer's info.
 */

/** A durable consumer's positions, as its info reports them. */
export interface ConsumerPosition {
  /** `ack_floor.stream_seq`: every stream sequence up to it is acknowledged. */
  ackFloorStream: number;
  /** `ack_floor.consumer_seq`: the delivery sequence of the ack that set the floor. */
  ackFloorDelivery: number;
  /** `delivered.consumer_seq`: the latest delivery sequence. */
  delivered: number;
  /** `num_ack_pending`: deliveries not yet acknowledged. */
  ackPending: number;
}

/** A delivery to acknowledge the floor with. */
export interface FloorAck<M> {
  streamSeq: number;
  deliverySeq: number;
  msg: M;
}

interface Held<M> {
  done: boolean;
  streamSeq: number;
  deliverySeq: number;
  msg: M;
}

/** The acknowledgement floor of one reader of an `AckPolicy.All` durable. */
export class AckFloor<M> {
  /**
   * Deliveries held, not yet acknowledged (the latest delivery of each stream sequence), in ascending
   * stream sequence from `#head`; the slots before it are emptied. Not a Map: one delivery comes and goes
   * with every event, and a Map rebuilding its table every few of them left its obsolete tables pointing
   * at the deliveries they held (each a message and its socket buffer), alive through scavenges (see
   * ChurnTable). Deliveries arrive nearly always in stream order, so an array appends them.
   */
  #held: (Held<M> | undefined)[] = [];
  #head = 0;
  #clean: boolean;
  #lastDelivery: number;
  #ackedStream: number;
  #ackedDelivery: number;
  /** The latest floor this reader sent: every delivery up to it was settled here. */
  #lastSent: FloorAck<M> | undefined;

  /** From the consumer's info read before the first pull. */
  constructor(start: ConsumerPosition) {
    this.#clean = start.ackPending === 0;
    this.#lastDelivery = start.delivered;
    this.#ackedStream = start.ackFloorStream;
    this.#ackedDelivery = start.ackFloorDelivery;
  }

  /** True while every outstanding delivery of the consumer is this reader's. */
  get clean(): boolean {
    return this.#clean;
  }

  /** Deliveries held and not yet acknowledged. */
  get held(): number {
    return this.#held.length - this.#head;
  }

  /** The deliveries held, settled or not, in ascending stream sequence. */
  *messages(): IterableIterator<M> {
    for (let i = this.#head; i < this.#held.length; i++) yield this.#held[i]!.msg;
  }

  /** Whether a delivery of stream sequence `streamSeq` is held here, not yet acknowledged. */
  holds(streamSeq: number): boolean {
    return this.#held[this.#at(streamSeq)]?.streamSeq === streamSeq;
  }

  /** The highest floor this reader sent (0: none yet); the server's can be lower a moment, or after a restart. */
  get sentFloor(): number {
    return this.#lastSent?.streamSeq ?? 0;
  }

  /** The stream sequence acknowledged so far, as this reader knows it. */
  get acked(): number {
    return this.#ackedStream;
  }

  /**
   * A delivery arrived (in the order they arrive). One at or under the floor this reader sent is held
   * too: the server redelivers only what it has outstanding, so its ack was not taken (yet: an ack in
   * flight; or never: lost with the connection — nats.js drops what it had not written when it
   * reconnects —, or a nats-server that restarted from a consumer state older than its last acks). The
   * reader is then not clean: the runner reads the consumer's info and sends that floor again
   * ({@link forgotten}). Waiting for a floor above it was not enough: a quiet durable has none to send
   * (the batch came back every ack_wait, for days), and one at max_ack_pending gets no newer delivery
   * to send one with (stopped for good).
   */
  received(deliverySeq: number, streamSeq: number, msg: M): void {
    // Anything but the next delivery sequence: one went elsewhere, arrived out of order, or the server
    // numbers again from an older state (restarted). Not clean.
    if (deliverySeq !== this.#lastDelivery + 1) this.#clean = false;
    // Back again though acknowledged by a floor this reader sent (or the server's floor it read): that ack was not taken.
    if (streamSeq <= this.#ackedStream) this.#clean = false;
    // The latest arrival, not the highest: after a restart from an older state the server's numbering is the one to follow.
    this.#lastDelivery = deliverySeq;
    const i = this.#at(streamSeq);
    const h = this.#held[i];
    if (h?.streamSeq === streamSeq) {
      h.deliverySeq = deliverySeq;
      h.msg = msg;
    } else if (h === undefined) this.#held.push({ done: false, streamSeq, deliverySeq, msg });
    else this.#held.splice(i, 0, { done: false, streamSeq, deliverySeq, msg });
  }

  /** A delivery is settled for good (applied, a duplicate, not this reader's type, or dead-lettered). */
  done(streamSeq: number): void {
    const h = this.#held[this.#at(streamSeq)];
    if (h?.streamSeq === streamSeq) h.done = true;
  }

  /**
   * The delivery to acknowledge now, if any: the highest stream sequence below every unsettled one,
   * among deliveries the server will take an ack of (its delivery sequence above the floor's).
   */
  next(): FloorAck<M> | undefined {
    if (!this.#clean) return undefined;
    // In ascending stream sequence: the settled ones before the first unsettled, the highest the server takes.
    let best: Held<M> | undefined;
    for (let i = this.#head; i < this.#held.length; i++) {
      const h = this.#held[i]!;
      if (!h.done) break;
      if (h.streamSeq > this.#ackedStream && h.deliverySeq > this.#ackedDelivery) best = h;
    }
    return best && { streamSeq: best.streamSeq, deliverySeq: best.deliverySeq, msg: best.msg };
  }

  /** The ack of {@link next} was sent. */
  sent(ack: FloorAck<M>): void {
    this.#lastSent = ack;
    this.#ackedStream = ack.streamSeq;
    this.#ackedDelivery = ack.deliverySeq;
    this.#dropUpTo(ack.streamSeq);
  }

  /**
   * The floor to send again, when the server's is below the latest this reader sent: it restarted from
   * a consumer state older than that ack, and has deliveries outstanding again that this reader settled
   * (every delivery up to a floor it sent was its own and settled). Sent again, they are settled at
   * once instead of after ack_wait; the server takes it if its delivery sequence is above the floor's.
   */
  forgotten(now: ConsumerPosition): FloorAck<M> | undefined {
    const last = this.#lastSent;
    return last && now.ackFloorStream < last.streamSeq && now.ackFloorDelivery < last.deliverySeq ? last : undefined;
  }

  /**
   * The consumer's info, read while not clean. The server's floor is taken as it is: higher, another
   * reader's floor settled what it covers (dropped here); lower, the server lost acks of this reader
   * (it restarted from an older consumer state) and has those deliveries outstanding again, to be
   * held and covered once more. The reader is clean again when the server's outstanding deliveries
   * are exactly those held here — every held delivery is outstanding (nothing acknowledged it, nothing
   * else can drop it), so equal counts mean equal sets; and no delivery is on its way, to here or
   * elsewhere (the latest delivery sequence is the latest arrived). Info read before an ack of ours was
   * taken, or before a delivery arrived, simply does not match: asked again later.
   */
  reconcile(now: ConsumerPosition): boolean {
    this.#ackedStream = now.ackFloorStream;
    this.#ackedDelivery = now.ackFloorDelivery;
    this.#dropUpTo(now.ackFloorStream);
    if (!this.#clean && now.delivered === this.#lastDelivery && now.ackPending === this.held) this.#clean = true;
    return this.#clean;
  }

  /** The index of the first held delivery whose stream sequence is at least `streamSeq` (the length when none). */
  #at(streamSeq: number): number {
    const held = this.#held;
    let lo = this.#head;
    let hi = held.length;
    // Nearly always a new delivery beyond every held one: no search.
    if (hi === lo || held[hi - 1]!.streamSeq < streamSeq) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (held[mid]!.streamSeq < streamSeq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Forgets the held deliveries up to `streamSeq`; compacts the array once most of it is emptied slots. */
  #dropUpTo(streamSeq: number): void {
    const held = this.#held;
    while (this.#head < held.length && held[this.#head]!.streamSeq <= streamSeq) held[this.#head++] = undefined;
    if (this.#head === held.length) {
      this.#held = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= held.length) {
      this.#held = held.slice(this.#head);
      this.#head = 0;
    }
  }
}
