// Pure arithmetic of the server-clock estimate: no backend involved.
import { describe, expect, it } from 'vitest';
import { ServerClock } from '../src/adapter.js';

describe('ServerClock', () => {
  it('is this machine clock until it observes the server, then follows the server', () => {
    const clock = new ServerClock();
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(50);
    const t = Date.now();
    // A reply stamped 2 minutes ahead of us, in ms resolution, after a 10 ms round trip.
    clock.observe(t + 120_000, t - 10, t, 1);
    expect(clock.now() - Date.now()).toBeGreaterThan(119_900);
    expect(clock.now() - Date.now()).toBeLessThan(120_100);
  });

  it('keeps its estimate through jitter inside the stamp resolution, and follows real drift', () => {
    const clock = new ServerClock();
    const t = Date.now();
    clock.observe(t + 5_000, t - 2, t, 1000); // Date header: whole seconds
    const first = clock.now() - Date.now();
    clock.observe(t + 4_800, t - 40, t, 1000); // coarser reading within its error: ignored
    expect(Math.abs(clock.now() - Date.now() - first)).toBeLessThan(20);
    clock.observe(t - 60_000, t - 40, t, 1000); // the server's clock moved: followed
    expect(clock.now() - Date.now()).toBeLessThan(-58_000);
  });

  it('ignores a reply without a usable time', () => {
    const clock = new ServerClock();
    clock.observe(Number.NaN, 0, 1, 1000);
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(50);
  });
});
