import { describe, expect, it } from 'vitest';
import { heartbeat } from '../src/heartbeat.js';

const until = async (ok: () => boolean) => {
  while (!ok()) await new Promise((r) => setTimeout(r, 5));
};

describe('heartbeat (one timer per period, shared by the runs in flight)', () => {
  it('ticks each beat every period, never before its first period is up, and not after stop', async () => {
    const every = 20;
    const joined = performance.now();
    const ticks: number[] = [];
    const beat = heartbeat(every, null, () => ticks.push(performance.now()));
    await until(() => ticks.length >= 3);
    beat.stop();
    beat.stop(); // twice is harmless
    const n = ticks.length;
    expect(ticks[0]! - joined).toBeGreaterThanOrEqual(every - 1);
    for (let i = 1; i < n; i++) expect(ticks[i]! - ticks[i - 1]!).toBeGreaterThanOrEqual(every - 1);
    await new Promise((r) => setTimeout(r, every * 4));
    expect(ticks.length).toBe(n);
  });

  it('beats that join at different times, or with other periods, each keep their own rhythm; a stopped one does not stop the rest', async () => {
    const counts = [0, 0, 0, 0];
    const beats = [heartbeat(15, null, () => counts[0]!++), heartbeat(15, null, () => counts[1]!++)];
    await until(() => counts[0]! >= 1);
    beats.push(
      heartbeat(15, null, () => counts[2]!++),
      heartbeat(40, null, () => counts[3]!++),
    );
    beats[0]!.stop();
    const stoppedAt = counts[0]!;
    await until(() => counts[1]! >= 4 && counts[2]! >= 3 && counts[3]! >= 2);
    for (const b of beats) b.stop();
    expect(counts[0]).toBe(stoppedAt);
  });

  it('a beat that starts after the others stopped (the timer left to run out) still ticks', async () => {
    let a = 0;
    let b = 0;
    const first = heartbeat(25, null, () => a++);
    first.stop();
    const second = heartbeat(25, null, () => b++);
    await until(() => b >= 2);
    second.stop();
    expect(a).toBe(0);
  });
});
