// `@idem/core/tiered`: a fast front store decides admission (fenced claims and
// leases, as on its own); finished records are written through to a durable
// archive (S3, GCS, LMDB: any store composed from an atomic update step), and
// the front keeps them only `frontRetentionMs`. A claim that the front answers
// as a fresh key consults the archive before anyone runs, so post-completion
// memory outlives the front's (eviction, restart without persistence, failover).
// docs/semantics.md §12 is the specification; this file is its one implementation.
import type { AtomicUpdate, Guess } from './atomic.js';
import { decideClaim, decideFinish, type ClaimInput, type ClaimOutcome, type FinishOp, type FinishValue, type Lease, type Step } from './decide.js';
import type { Capabilities, Driver, DriverContext, ListPage, ListQuery, SweepCounts } from './driver.js';
import { BackendRefusedError, BackendUnavailableError, IdemError, InvalidArgumentError, LeaseLostError } from './errors.js';
import { createStore } from './factory.js';
import { isExpired, type IdemRecord } from './record.js';
import type { IdempotencyStore, StoreOptions } from './store.js';
import { describeValue, validateDuration } from './validate.js';

export const DEFAULT_FRONT_RETENTION_MS = 10 * 60_000;

export interface TieredStoreOptions extends StoreOptions {
  /** Decides admission: claims, leases, in-flight state, recent finishes (e.g. a Valkey store). Closed with the tiered store. */
  front: IdempotencyStore;
  /** Keeps finished records for the whole retention (an S3, GCS or LMDB store; not Valkey). Closed with the tiered store. */
  archive: IdempotencyStore;
  /** How long the front keeps a finished record (at most the retention). Default 10 minutes. */
  frontRetentionMs?: number;
}

/** Opens nothing: composes two open stores. Options are checked before any I/O. */
export async function createTieredStore(options: TieredStoreOptions): Promise<IdempotencyStore> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`options must be an object, got ${describeValue(options)}`);
  const { front, archive, frontRetentionMs = DEFAULT_FRONT_RETENTION_MS, ...storeOptions } = options;
  const isStore = (s: unknown): s is IdempotencyStore => typeof (s as IdempotencyStore | null)?.driver?.claim === 'function';
  if (!isStore(front)) throw new InvalidArgumentError(`front must be an idem store, got ${describeValue(front)}`);
  if (!isStore(archive)) throw new InvalidArgumentError(`archive must be an idem store, got ${describeValue(archive)}`);
  if (front === archive) throw new InvalidArgumentError('front and archive must be two different stores');
  const update = archive.driver.atomicUpdate;
  if (typeof update !== 'function') {
    throw new InvalidArgumentError('archive must be a store built from an atomic update step (S3, GCS, LMDB); a full driver such as Valkey cannot archive');
  }
  validateDuration('frontRetentionMs', frontRetentionMs);
  return createStore(storeOptions, (resolved) => new TieredDriver(front.driver, archive.driver, update, frontRetentionMs, resolved.clock));
}

const MAX_MARKS = 10_000;
const markOf = (lease: Lease) => `${lease.name}:${lease.fence}:${lease.runId}`;

class TieredDriver implements Driver {
  readonly kind = 'tiered';
  readonly capabilities: Capabilities;
  readonly writeRaw?: (name: string, bytes: string | Uint8Array) => Promise<void>;
  private readonly front: Driver;
  private readonly archive: Driver;
  private readonly update: AtomicUpdate;
  private readonly frontRetentionMs: number;
  /** The tiered store's clock: judges the archive's expiry when the front's clock is the server's. */
  private readonly clock: () => number;

  constructor(front: Driver, archive: Driver, update: AtomicUpdate, frontRetentionMs: number, clock: () => number) {
    this.front = front;
    this.archive = archive;
    this.update = update;
    this.frontRetentionMs = frontRetentionMs;
    this.clock = clock;
    // Corrupt-record tests write into the front, where claims meet records first.
    if (front.writeRaw) this.writeRaw = (name, bytes) => front.writeRaw!(name, bytes);
    // The front's clock and expiry are what claims see; several processes share the pair only if both are shared.
    this.capabilities = {
      ...front.capabilities,
      sharedAcrossProcesses: front.capabilities.sharedAcrossProcesses && archive.capabilities.sharedAcrossProcesses,
    };
  }

  async claim(input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome> {
    const out = await this.front.claim(input, ctx);
    // A front that holds the key in flight or finished answers alone: a duplicate costs no archive request.
    if (out.outcome === 'in_flight' || out.outcome === 'completed') return out;
    const lease = out.lease;
    // The archive counts only at or above the fence the front knew (a record a later claim superseded does not).
    const floor = out.previous?.fence ?? 0;
    // The front's clock at the claim (its deadline less the lease): archived deadlines follow that clock.
    const now = lease.leaseExpiresAt - input.leaseMs;
    let answer: ClaimOutcome;
    let marked = false;
    try {
      // One atomic step on the archive: answer its finish, or mark the key with this claim's fence, so
      // that a finish still under way from an older lease can no longer land there (and be answered).
      let version: string | undefined;
      ({ value: answer, version } = await this.update(
        input.name,
        (stored): Step<ClaimOutcome> => {
          marked = false; // casUpdate may decide again on what it read after a conflict
          const finished = stored !== undefined && stored.status !== 'in_flight' && !isExpired(stored, now) && stored.fence >= floor ? stored : undefined;
          if (finished !== undefined && !input.force) {
            // KEY_REUSE_MISMATCH against the archived record, as the front would have raised.
            const decided = decideClaim(finished, input, now, ctx.clockSkewMs).value;
            if (decided.outcome === 'completed') return { value: decided };
          }
          // Marking needs a fence above the archive's; answering a finish (above) did not.
          if (stored !== undefined && (stored.fence > lease.fence || (stored.fence === lease.fence && stored.runId !== lease.runId))) {
            throw new BackendRefusedError(
              `${input.name}: the front's fence ${lease.fence} does not exceed the archived fence ${stored.fence}; the front restarted its fences (a swept client-clock front, a clock gone back), so this key cannot be fenced against the archive`,
            );
          }
          // A retryable failure the front forgot: reported as the front would have (the front's own `previous` wins).
          const value: ClaimOutcome =
            finished !== undefined && out.outcome === 'acquired' && out.previous === undefined ? { outcome: 'acquired', lease, previous: finished } : out;
          // Our own mark or finish, met again by a claim repeated with its runId: nothing to write.
          if (stored !== undefined && stored.fence === lease.fence) return { value };
          marked = true;
          return { write: lease.record, value };
        },
        { record: undefined, version: undefined }, // a first claim of a key is one create-if-absent
      ));
      marked &&= answer.outcome !== 'completed';
      if (marked && version !== undefined) this.remember(lease, version);
    } catch (error) {
      // Archive unreachable, its record unreadable, a mismatch: never acquired on a guess. The fresh claim is given back.
      await this.giveBack(lease, ctx);
      throw error instanceof IdemError ? error : new BackendUnavailableError(`archive update of ${input.name} failed`, error);
    }
    if (answer.outcome !== 'completed') return answer;
    // Finished in the archive: answer it, and copy it into the front (fenced by our fresh lease) so that
    // the next duplicate stops at the front. The copy lives at most as long as the archived record.
    const stored = answer.record;
    const retentionMs = Math.max(1, Math.min(this.frontRetentionMs, (stored.expiresAt ?? now) - now));
    const copy: FinishOp =
      stored.status === 'succeeded'
        ? { op: 'complete', retentionMs, ...(stored.result !== undefined ? { result: stored.result } : {}) }
        : { op: 'fail', retentionMs, ...(stored.error !== undefined ? { error: stored.error } : {}) };
    try {
      await this.front.finish(lease, copy, ctx);
    } catch (error) {
      void error; // the answer stands (the archive holds it); without the copy the key must at least not stay claimed
      await this.giveBack(lease, ctx);
    }
    return answer;
  }

  async finish(lease: Lease, op: FinishOp, ctx: DriverContext): Promise<FinishValue> {
    if (op.op === 'renew') return this.front.finish(lease, op, ctx);
    // The archive holds this lease's mark, which no claim answers: a released key is free.
    if (op.op === 'release') {
      this.marks.delete(markOf(lease));
      return this.front.finish(lease, op, ctx);
    }
    // 1. Fence check in the front: is the key still this lease's claim? If not, the front answers
    //    alone (LEASE_LOST, or a repeated finish's stored record) and nothing reaches the archive.
    const current = await this.front.read(lease.name);
    if (current === undefined || current.status !== 'in_flight' || current.fence !== lease.fence || current.runId !== lease.runId) {
      return this.front.finish(lease, this.frontOp(op), ctx);
    }
    // 2. The archive, conditioned on its fence for the key: this lease's own mark (or a lower one).
    //    A takeover between 1 and 2 marked the archive with a higher fence first: refused, LEASE_LOST.
    const archived = decideFinish(current, lease, op, this.archiveNow(ctx)).write!;
    const mark = this.marks.get(markOf(lease));
    this.marks.delete(markOf(lease));
    await this.update(
      lease.name,
      (stored) => {
        if (stored === undefined || stored.fence < archived.fence || (stored.fence === archived.fence && stored.runId === archived.runId)) {
          return { write: archived, value: undefined };
        }
        // A later claim has marked the key: this lease is a zombie and its result must not land.
        throw new LeaseLostError(lease.key, stored);
      },
      // Our mark's version from the claim: one conditional replace when nobody interfered.
      mark ?? { record: undefined, version: undefined },
    );
    // 3. The front: done. Duplicates stop here until frontRetentionMs, then read the archive.
    try {
      return await this.front.finish(lease, this.frontOp(op), ctx);
    } catch (error) {
      // A claim that took the key over between 2 and 3 met our archived finish in its archive step and
      // answered it (it would have replaced it with its mark otherwise): our finish is the key's outcome.
      if (!(error instanceof LeaseLostError)) throw error;
      const stored = await this.archive.read(lease.name);
      if (stored !== undefined && stored.fence === archived.fence && stored.runId === archived.runId && stored.status === archived.status)
        return { record: stored };
      throw error;
    }
  }

  /**
   * Now for the archive's records: the front's clock where the front judges by its server's
   * (this machine's clock then stands in for it: an injected clock would never move), else the store's.
   */
  private archiveNow(ctx: { now(): number }): number {
    return this.front.capabilities.clock === 'server' ? Date.now() : ctx.now();
  }

  /** complete/fail as the front stores them: for frontRetentionMs at most. */
  private frontOp(op: FinishOp): FinishOp {
    return op.op === 'complete' || op.op === 'fail' ? { ...op, retentionMs: Math.min(op.retentionMs, this.frontRetentionMs) } : op;
  }

  /** Versions of the marks this process wrote, by lease: a finish then skips a read. Bounded: the oldest go first. */
  private readonly marks = new Map<string, Guess>();

  private remember(lease: Lease, version: string): void {
    if (this.marks.size >= MAX_MARKS) this.marks.delete(this.marks.keys().next().value!);
    this.marks.set(markOf(lease), { record: lease.record, version });
  }

  /** Releases a claim we will not use; a failure leaves it until its lease dies (a retry with the same runId finds it). */
  private async giveBack(lease: Lease, ctx: DriverContext): Promise<void> {
    try {
      await this.front.finish(lease, { op: 'release' }, ctx);
    } catch (error) {
      void error; // the caller gets the original error; this claim ends with its lease
    }
  }

  /**
   * The front's record while it holds the key in flight or the same finish as the archive;
   * otherwise the archive's finished record. A record the archive holds past its retention is
   * absent, whatever clock the front judges by.
   */
  async read(name: string): Promise<IdemRecord | undefined> {
    const front = await this.front.read(name);
    if (front !== undefined && front.expiresAt === undefined) return front;
    const stored = await this.archive.read(name);
    const now = this.archiveNow({ now: this.clock });
    // Marks (in_flight records of claims) are not answers.
    const archived = stored !== undefined && stored.status !== 'in_flight' && !isExpired(stored, now) ? stored : undefined;
    if (archived === undefined) return front; // a client-clock store filters an expired one
    // A server-clock front (Valkey) returns only what its server judged live; a client-clock front's record past its retention is gone.
    const live = front !== undefined && (this.front.capabilities.clock === 'server' || !isExpired(front, now)) ? front : undefined;
    if (live?.fence === archived.fence) return live;
    // A front record at another fence is a copy a claim made from the archive's (with that
    // claim's runId; a finish of its own would have reached the archive first): the original is answered.
    return archived;
  }

  /** The front's records: claims in flight and recent finishes. The archive is listed with its own store. */
  list(query: ListQuery, ctx: DriverContext): Promise<ListPage> {
    return this.front.list(query, ctx);
  }

  /** The front's sweep; the archive is swept with its own store (or a bucket lifecycle rule). */
  sweep(ctx: DriverContext): Promise<SweepCounts> {
    return this.front.sweep(ctx);
  }

  async remove(name: string): Promise<boolean> {
    const [front, archive] = await Promise.all([this.front.remove(name), this.archive.remove(name)]);
    return front || archive;
  }

  async close(): Promise<void> {
    await Promise.all([this.front.close(), this.archive.close()]);
  }
}
