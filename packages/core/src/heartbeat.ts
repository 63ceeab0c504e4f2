// runOnce's heartbeats: one timer per period for every run in flight, instead of a setInterval
// per run (arming and clearing one was a tenth of runOnce's own CPU on a first execution).
import { DueQueue, type Pending } from './queue.js';

/** A run's place in its period's queue; `stop()` takes it out, and may be called more than once. */
export interface Beat {
  stop(): void;
}

/** A run's place in its period's queue: a class, so that a run costs one object and no closure. */
class Entry implements Beat, Pending {
  done = false;
  constructor(
    readonly queue: DueQueue<Entry>,
    readonly target: unknown,
    readonly tick: (target: unknown) => void,
    public due: number,
  ) {}

  stop(): void {
    this.done = true;
    this.queue.trim();
  }
}

/**
 * The runs sharing one period. Every run is due `every` ms after it joined or last ticked, so
 * the queue is in due order when runs are appended as they join and again after each tick: the
 * timer only ever waits for the head. The timer is left to run out when the queue empties (a run
 * that starts before it fires reuses it), and unref'd, as the setInterval per run was: a
 * heartbeat never keeps the process up.
 */
class Period {
  private readonly queue = new DueQueue<Entry>();
  private armed = false;

  constructor(private readonly every: number) {}

  add(target: unknown, tick: (target: unknown) => void): Beat {
    const entry = new Entry(this.queue, target, tick, performance.now() + this.every);
    this.queue.push(entry);
    // A timer still armed fires no later than this entry is due: it was armed for an earlier joiner.
    if (!this.armed) this.arm(entry.due);
    return entry;
  }

  private arm(at: number): void {
    this.armed = true;
    setTimeout(() => this.fire(), Math.max(1, Math.ceil(at - performance.now()))).unref();
  }

  private fire(): void {
    this.armed = false;
    const now = performance.now();
    const due: Entry[] = [];
    // Timers count whole milliseconds: one that fires within a millisecond of a due time is on time.
    for (let entry = this.queue.first(); entry !== undefined && entry.due <= now + 1; entry = this.queue.first()) {
      this.queue.shift();
      due.push(entry);
    }
    // Queued again after the pass, so that each run ticks once per firing however short its period.
    for (const entry of due) {
      entry.due = now + this.every;
      this.queue.push(entry);
      entry.tick(entry.target);
    }
    const next = this.queue.first();
    if (next !== undefined) this.arm(next.due);
    // Idle: forgotten, so that a process that used many periods does not keep them all.
    else if (periods.get(this.every) === this) periods.delete(this.every);
  }
}

const periods = new Map<number, Period>();

/**
 * Calls `tick(target)` every `every` ms (at most MAX_TIMER_MS) until the returned beat is stopped.
 * A target and a shared function rather than a closure per run.
 */
export function heartbeat<T>(every: number, target: T, tick: (target: T) => void): Beat {
  let period = periods.get(every);
  if (period === undefined) periods.set(every, (period = new Period(every)));
  return period.add(target, tick as (target: unknown) => void);
}
