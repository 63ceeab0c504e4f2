// Pending entries in the order they fall due, finished in any order: the queue behind runOnce's
// heartbeats and the Valkey store's one deadline timer. A timer over it only ever waits for the
// oldest entry still pending.

/** An entry of a DueQueue: set `done` when it is finished, then call the queue's trim(). */
export interface Pending {
  done: boolean;
}

/**
 * A FIFO whose entries may finish out of order. A finished entry is dropped when it reaches the
 * head, and the array is compacted now and then, so the queue holds about what is still pending.
 */
export class DueQueue<E extends Pending> {
  private items: E[] = [];
  private head = 0;

  push(entry: E): void {
    this.items.push(entry);
  }

  /** The oldest entry not done, if any. */
  first(): E | undefined {
    this.trim();
    return this.items[this.head];
  }

  /** Takes out the oldest entry not done (first()'s), if any. */
  shift(): E | undefined {
    const entry = this.first();
    if (entry !== undefined) this.head++;
    return entry;
  }

  /** Drops finished entries from the head; true when nothing is pending. */
  trim(): boolean {
    while (this.head < this.items.length && this.items[this.head]!.done) this.head++;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
      return true;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return false;
  }
}
