import { describe, expect, it } from 'vitest';
import { DueQueue } from '../src/queue.js';

describe('DueQueue (entries in due order, finished in any order)', () => {
  it('gives the oldest entry not done, skips finished ones, and says when nothing is pending', () => {
    const q = new DueQueue<{ n: number; done: boolean }>();
    const entries = Array.from({ length: 3000 }, (_, n) => ({ n, done: false }));
    for (const e of entries) q.push(e);
    // Finished out of order: every odd one, then the first ten.
    for (const e of entries) if (e.n % 2 === 1) e.done = true;
    for (const e of entries.slice(0, 10)) e.done = true;
    expect(q.trim()).toBe(false);
    expect(q.first()?.n).toBe(10);
    expect(q.shift()?.n).toBe(10);
    expect(q.first()?.n).toBe(12);
    for (const e of entries) e.done = true;
    expect(q.trim()).toBe(true);
    expect(q.first()).toBeUndefined();
    expect(q.shift()).toBeUndefined();
    // Usable again once empty.
    const late = { n: 1, done: false };
    q.push(late);
    expect(q.first()).toBe(late);
  });
});
