// The retry and deadline policy: every operation bounded by timeoutMs (one shared timer for first
// attempts, a timer of its own for a retry), the pause between attempts, and BACKEND_UNAVAILABLE
// once no budget is left.
import { BackendUnavailableError, DueQueue } from '@idem/core/adapter';
import type { Guard, ValkeyClient } from './client.js';

export const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * The time bound of every first attempt, with one timer per store instead of one per operation
 * (a timer and a Promise.race per call cost more client CPU than the rest of a claim's JS). First
 * attempts all get the same budget, so their deadlines come in the order they were queued: the
 * timer only ever needs the oldest one still pending, and a settled operation at the head is
 * dropped at once, so the queue holds no more than what is in flight. The monotonic clock keeps
 * that order, and the budget, whatever the wall clock does.
 */
export class Deadlines {
  private readonly queue = new DueQueue<{ at: number; reject: (error: Error) => void; done: boolean }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly budgetMs: number) {}

  /** `promise`, or a rejection once the budget has run out (counted on the monotonic clock). */
  bound<T>(promise: Promise<T>): Promise<T> {
    const at = performance.now() + this.budgetMs;
    return new Promise<T>((resolve, reject) => {
      const entry = { at, reject, done: false };
      this.queue.push(entry);
      this.timer ??= this.arm(at);
      promise.then(
        (value) => {
          entry.done = true;
          this.trim();
          resolve(value);
        },
        (error: unknown) => {
          entry.done = true;
          this.trim();
          reject(error);
        },
      );
    });
  }

  private arm(at: number): NodeJS.Timeout {
    // Not unref'd, as one timer per operation was not: a pending operation keeps the process up until it ends.
    return setTimeout(() => this.fire(), Math.max(1, Math.ceil(at - performance.now())));
  }

  private trim(): void {
    // Nothing pending: no timer either, so that an idle store never holds the process up.
    if (this.queue.trim()) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    for (let entry = this.queue.first(); entry !== undefined && entry.at <= now; entry = this.queue.first()) {
      entry.done = true;
      entry.reject(new Error(`no reply within ${this.budgetMs} ms`));
    }
    const next = this.queue.first();
    if (next !== undefined) this.timer = this.arm(next.at);
  }
}

export async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * After a failed attempt: the pause before the next one. Throws BACKEND_UNAVAILABLE instead when
 * there is to be no retry, or no budget left for one after the pause (10 ms at least, to be worth sending).
 */
export function pauseAfter(client: ValkeyClient, guard: Guard, error: unknown, attempt: number, deadline: number, first: string, retry: boolean): number {
  if (guard.fatal) throw guard.fatal;
  // A slot moved (resharding, failover): ioredis follows MOVED by itself only outside a
  // pipeline, and auto-pipelining puts every command in one. Learn the new map, then retry.
  if (error instanceof Error && /^(MOVED|ASK) /.test(error.message)) client.refreshSlotsCache?.();
  const pause = Math.min(50 * 2 ** attempt, deadline - Date.now() - 10);
  if (!retry || pause < 0) {
    const why = describe(error);
    // The first failure usually says why (server down, too few replicas); the last one may only be the budget running out.
    throw new BackendUnavailableError(`Valkey/Redis unavailable: ${why}${why !== first ? ` (first attempt: ${first})` : ''}`, error);
  }
  return pause;
}
