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
