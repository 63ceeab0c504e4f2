import { InvalidArgumentError } from './errors.js';
import { describeValue } from './validate.js';

/**
 * This machine's estimate of a server's clock, from the times the server
 * stamps on its replies (an S3 `Date` header, a GCS object's `updated`). A
 * store that judges leases by it shares one time source with every other
 * client of the same bucket, whatever their wall clocks say.
 */
export class ServerClock {
  private offset = 0;
  private uncertainty = Number.POSITIVE_INFINITY;

  /** Epoch ms by the server's clock as estimated; this machine's clock until the first observation. */
  readonly now = (): number => Math.round(Date.now() + this.offset);

  /**
   * `serverTime` was stamped while the request was in flight, between `sent`
   * and `received` by this machine's clock; `resolutionMs` is the stamp's
   * granularity (1000 for an HTTP Date header).
   */
  observe(serverTime: number, sent: number, received: number, resolutionMs: number): void {
    if (!Number.isFinite(serverTime)) return;
    const estimate = serverTime + resolutionMs / 2 - (sent + received) / 2;
    const uncertainty = (received - sent) / 2 + resolutionMs / 2;
    // Take a sharper estimate, or one that disagrees beyond its own error; ignore jitter inside it.
    if (uncertainty <= this.uncertainty || Math.abs(estimate - this.offset) > uncertainty) {
      this.offset = estimate;
      this.uncertainty = uncertainty;
    }
  }
}

/**
 * The `serverClock` option of stores that can follow their server's clock:
 * a new ServerClock when it is true, undefined when false; it excludes an
 * injected `clock`. Checked before any I/O, like every option.
 */
export function serverClockOption(serverClock: unknown, clock: unknown): ServerClock | undefined {
  if (typeof serverClock !== 'boolean') throw new InvalidArgumentError(`serverClock must be a boolean, got ${describeValue(serverClock)}`);
  if (serverClock && clock !== undefined) throw new InvalidArgumentError('give either clock or serverClock, not both');
  return serverClock ? new ServerClock() : undefined;
}
