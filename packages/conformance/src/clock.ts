/** A clock tests move by hand; starts at the real time so stored dates look sane. */
export class TestClock {
  private t = Date.now();
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}
