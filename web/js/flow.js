// Flow control: how many frames may be unanswered at once. The page never builds a backlog: a capture
// tick that finds the limit reached is skipped (the camera keeps running, the frame is simply not
// sent). A frame whose answer never comes (lost, or dropped by the edge) is forgotten after
// `timeoutMs`, so one lost answer cannot stall the stream forever.

export class InFlight {
  constructor(limit = 1, timeoutMs = 5000) {
    this.limit = limit;
    this.timeoutMs = timeoutMs;
    this.pending = new Map(); // seq -> time sent (ms)
  }

  canSend() {
    return this.pending.size < this.limit;
  }

  sent(seq, now) {
    this.pending.set(seq, now);
  }

  /**
   * The answer to `seq` arrived. Returns how many *older* frames were still pending: the edge
   * answers in order and keeps only the newest waiting frame, so an answer to seq N means every
   * earlier unanswered frame was dropped.
   */
  answered(seq) {
    let superseded = 0;
    for (const pendingSeq of [...this.pending.keys()]) {
      if (pendingSeq < seq) {
        this.pending.delete(pendingSeq);
        superseded += 1;
      }
    }
    this.pending.delete(seq);
    return superseded;
  }

  /** Forget frames older than the timeout; returns how many were forgotten. */
  expire(now) {
    let expired = 0;
    for (const [seq, sentAt] of [...this.pending]) {
      if (now - sentAt > this.timeoutMs) {
        this.pending.delete(seq);
        expired += 1;
      }
    }
    return expired;
  }

  clear() {
    this.pending.clear();
  }
}
