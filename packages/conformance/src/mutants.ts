// Broken drivers for the suite's self-test: each is the reference in-memory
// driver (@idem/core/memory) with one plausible mistake. The suite must fail
// every one of them (test/mutation.test.ts); a new conformance test earns its
// place by failing a mutant that passed before.
import {
  casUpdate,
  composeDriver,
  CONFLICT,
  CorruptRecordError,
  decideClaim,
  decideFinish,
  IdempotencyStore,
  isExpired,
  isSweepable,
  LeaseLostError,
  leaseOf,
  parseRecord,
  serializeRecord,
  storageName,
  type AtomicUpdate,
  type CasPrimitives,
  type ClaimInput,
  type ClaimOutcome,
  type Conflict,
  type Driver,
  type DriverContext,
  type FinishOp,
  type FinishValue,
  type IdemRecord,
  type Lease,
  type ListPage,
  type ListQuery,
  type ScanPrimitives,
  type Step,
  type SweepCounts,
} from '@idem/core/adapter';
import { MemoryDriver, type MemoryBackend, type MemoryStoreOptions } from '@idem/core/memory';

export type MutantCategory =
  | 'atomicity'
  | 'cross-process'
  | 'fencing'
  | 'time'
  | 'retention'
  | 'sweep'
  | 'dedup'
  | 'results'
  | 'keys'
  | 'fingerprints'
  | 'listing'
  | 'corrupt'
  | 'admin';

export interface Mutant {
  id: string;
  category: MutantCategory;
  /** The mistake, in one line. */
  fault: string;
  /** A store over `options.backend` (a new one when absent), like createMemoryStore. */
  create(options?: MemoryStoreOptions): IdempotencyStore;
}

/** Lets other callbacks run, as a network round trip would. */
const roundTrip = () => new Promise<void>((resolve) => setImmediate(resolve));

type ClaimDecision = (current: IdemRecord | undefined, input: ClaimInput, now: number, skew: number) => Step<ClaimOutcome>;
type FinishDecision = (current: IdemRecord | undefined, lease: Lease, op: FinishOp, now: number) => Step<FinishValue>;

/** The reference driver with its decisions, clock and storage made replaceable. */
class Base extends MemoryDriver {
  constructor(backend: MemoryBackend) {
    super(backend);
  }
  protected decideClaim: ClaimDecision = decideClaim;
  protected decideFinish: FinishDecision = decideFinish;
  protected now = (ctx: DriverContext) => ctx.now();
  override claim: Driver['claim'] = async (input, ctx) => {
    const now = this.now(ctx);
    return (await this.update(input.name, (current) => this.decideClaim(current, input, now, ctx.clockSkewMs))).value;
  };
  override finish: Driver['finish'] = async (lease, op, ctx) => {
    const now = this.now(ctx);
    return (await this.update(lease.name, (current) => this.decideFinish(current, lease, op, now))).value;
  };
}

/** A claim decision whose written record is changed by `change`; the lease follows the record. */
function rewriteClaim(change: (write: IdemRecord, current: IdemRecord | undefined, input: ClaimInput, now: number) => IdemRecord): ClaimDecision {
  return (current, input, now, skew) => {
    const step = decideClaim(current, input, now, skew);
    if (step.write === undefined) return step;
    const write = change(step.write, current, input, now);
    const value = step.value as ClaimOutcome & { lease: Lease };
    return { write, value: { ...value, lease: leaseOf(input.key, input.name, write) } };
  };
}

/** A finish decision whose written record is changed by `change`. */
function rewriteFinish(change: (write: IdemRecord, current: IdemRecord, lease: Lease, op: FinishOp, now: number) => IdemRecord): FinishDecision {
  return (current, lease, op, now) => {
    const step = decideFinish(current, lease, op, now);
    if (step.write === undefined) return step;
    const write = change(step.write, current!, lease, op, now);
    const value: FinishValue = { ...step.value };
    if (value.record) value.record = write;
    if (value.lease) value.lease = leaseOf(lease.key, lease.name, write);
    return { write, value };
  };
}

function mutant(id: string, category: MutantCategory, fault: string, build: (backend: MemoryBackend) => Driver): Mutant {
  return {
    id,
    category,
    fault,
    create: (options = {}) => {
      const { backend = new Map(), ...storeOptions } = options;
      return new IdempotencyStore(build(backend), storeOptions);
    },
  };
}

/** Compare-and-swap primitives over the backend, each a round trip unless `sync`; `checks` false makes a write unconditional. */
function memoryCas(backend: MemoryBackend, checks: { create: boolean; replace: boolean }, sync = false): CasPrimitives {
  const trip = sync ? async () => {} : roundTrip;
  const versions = new Map<string, number>();
  let next = 0;
  const put = (name: string, body: string) => {
    backend.set(name, body);
    versions.set(name, ++next);
    return String(next);
  };
  return {
    async read(name) {
      await trip();
      const raw = backend.get(name);
      return raw === undefined ? undefined : { record: parseRecord(name, raw), version: String(versions.get(name) ?? 0) };
    },
    async create(name, body): Promise<string | Conflict> {
      await trip();
      if (checks.create && backend.has(name)) return CONFLICT;
      return put(name, body);
    },
    async replace(name, body, version): Promise<string | Conflict> {
      await trip();
      if (checks.replace && String(versions.get(name) ?? 0) !== version) return CONFLICT;
      return put(name, body);
    },
  };
}

/** Serves claims and finishes from another storage name: what a backend that folds keys does. */
class FoldedKeys extends Base {
  private readonly canonical = new Map<string, string>();
  constructor(
    backend: MemoryBackend,
    private readonly fold: (key: string) => string,
  ) {
    super(backend);
  }
  private as(name: string) {
    return this.canonical.get(name) ?? name;
  }
  override claim: Driver['claim'] = async (input, ctx) => {
    const name = storageName(this.fold(input.key));
    this.canonical.set(input.name, name);
    const outcome = await (await this.update(name, (current) => decideClaim(current, { ...input, name }, ctx.now(), ctx.clockSkewMs))).value;
    if (outcome.outcome === 'acquired' || outcome.outcome === 'adopted') outcome.lease.name = input.name;
    return outcome;
  };
  override finish: Driver['finish'] = async (lease, op, ctx) =>
    (await this.update(this.as(lease.name), (current) => decideFinish(current, lease, op, ctx.now()))).value;
  override async read(name: string) {
    return this.load(this.as(name));
  }
  override async remove(name: string) {
    return this.backend.delete(this.as(name));
  }
}

export const MUTANTS: readonly Mutant[] = [
  // --- atomicity: the read-decide-write step is not one step
  mutant(
    'claim-read-then-write',
    'atomicity',
    'reads, awaits the network, then writes: two claimers both see a free key',
    (b) =>
      new (class extends Base {
        protected override update: AtomicUpdate = async (name, step) => {
          const current = this.load(name);
          await roundTrip();
          const decided = step(current);
          if (decided.write !== undefined) this.backend.set(name, serializeRecord(decided.write));
          return { value: decided.value };
        };
      })(b),
  ),
  mutant(
    'finish-read-then-write',
    'atomicity',
    'finish checks the fence, awaits, then writes: a takeover in between is overwritten',
    (b) =>
      new (class extends Base {
        override finish: Driver['finish'] = async (lease, op, ctx) => {
          const current = this.load(lease.name);
          await roundTrip();
          const decided = decideFinish(current, lease, op, ctx.now());
          if (decided.write !== undefined) this.backend.set(lease.name, serializeRecord(decided.write));
          return decided.value;
        };
      })(b),
  ),
  mutant(
    'cas-create-unconditional',
    'atomicity',
    'object store without If-None-Match: a create overwrites a rival create',
    (b) =>
      new (class extends Base {
        protected override update = casUpdate(memoryCas(b, { create: false, replace: true }));
      })(b),
  ),
  mutant(
    'cas-replace-unconditional',
    'atomicity',
    'object store without If-Match: a replace overwrites a rival takeover',
    (b) =>
      new (class extends Base {
        protected override update = casUpdate(memoryCas(b, { create: true, replace: false }));
      })(b),
  ),
  mutant(
    'sweep-scan-then-delete',
    'atomicity',
    'sweep scans, awaits, then deletes what it scanned without checking again',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext): Promise<SweepCounts> {
          const now = ctx.now();
          const doomed = [...this.backend.keys()].flatMap((name) => {
            let r: IdemRecord | undefined;
            try {
              r = this.load(name);
            } catch (error) {
              // Corrupt records left alone, as they should be: this mutant's mistake is elsewhere.
              if (error instanceof CorruptRecordError) return [];
              throw error;
            }
            return r && isSweepable(r, now) ? [[name, r] as const] : [];
          });
          await roundTrip();
          const counts = { expired: 0, deadLeases: 0 };
          for (const [name, r] of doomed) {
            this.backend.delete(name);
            if (isExpired(r, now)) counts.expired++;
            else counts.deadLeases++;
          }
          return counts;
        }
      })(b),
  ),
  // --- cross-process: a lock that holds in one handle only
  mutant(
    'lock-per-handle',
    'cross-process',
    'a mutex per store handle guards read-await-write; other handles (processes) on the same data race',
    (b) =>
      new (class extends Base {
        private queue: Promise<unknown> = Promise.resolve();
        protected override update: AtomicUpdate = (name, step) => {
          const run = this.queue.then(async () => {
            const current = this.load(name);
            await roundTrip();
            const decided = step(current);
            if (decided.write !== undefined) this.backend.set(name, serializeRecord(decided.write));
            return { value: decided.value };
          });
          this.queue = run.catch(() => undefined);
          return run;
        };
      })(b),
  ),
  // --- fencing
  mutant(
    'finish-checks-runid-only',
    'fencing',
    'finish compares the runId but not the fence',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) =>
          decideFinish(current, current && current.runId === lease.runId ? { ...lease, fence: current.fence } : lease, op, now);
      })(b),
  ),
  mutant(
    'finish-checks-fence-only',
    'fencing',
    'finish compares the fence but not the runId',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) =>
          decideFinish(current, current && current.fence === lease.fence ? { ...lease, runId: current.runId } : lease, op, now);
      })(b),
  ),
  mutant(
    'finish-unfenced',
    'fencing',
    'finish writes whatever is stored: no ownership check',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) =>
          decideFinish(current, current ? { ...lease, fence: current.fence, runId: current.runId } : lease, op, now);
      })(b),
  ),
  mutant(
    'adopt-keeps-fence',
    'fencing',
    'a takeover keeps the old fence',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, current) => (current && current.status === 'in_flight' ? { ...w, fence: current.fence } : w));
      })(b),
  ),
  mutant(
    'fence-restarts-after-retention',
    'fencing',
    'the fence counts from the live record only, restarting past retention',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, current, _i, now) => (current && isExpired(current, now) ? { ...w, fence: 1 } : w));
      })(b),
  ),
  mutant(
    'release-deletes',
    'fencing',
    'release deletes the record, so the next claim restarts the fence',
    (b) =>
      new (class extends Base {
        override finish: Driver['finish'] = async (lease, op, ctx) => {
          const value = (await this.update(lease.name, (c) => decideFinish(c, lease, op, ctx.now()))).value;
          if (op.op === 'release') this.backend.delete(lease.name);
          return value;
        };
      })(b),
  ),
  mutant(
    'late-finish-refused',
    'fencing',
    'a finish after the lease deadline is refused though nobody took over',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) => {
          if (current?.status === 'in_flight' && (current.leaseExpiresAt ?? 0) <= now) throw new LeaseLostError(lease.key, current);
          return decideFinish(current, lease, op, now);
        };
      })(b),
  ),
  mutant(
    'own-reclaim-rewrites',
    'fencing',
    "a claim repeated by the lease's own run takes a new fence",
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (current, input, now, skew) =>
          current?.status === 'in_flight' && current.runId === input.runId && !isExpired(current, now)
            ? decideClaim(current, { ...input, force: true }, now, skew)
            : decideClaim(current, input, now, skew);
      })(b),
  ),
  mutant(
    'release-unfenced',
    'fencing',
    'release frees the key whoever holds it',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) =>
          op.op === 'release' && current?.status === 'in_flight'
            ? { write: { ...current, leaseExpiresAt: now, expiresAt: now }, value: {} }
            : decideFinish(current, lease, op, now);
      })(b),
  ),
  // --- time
  mutant(
    'skew-ignored',
    'time',
    'clockSkewMs is not applied: takeover at the deadline',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now) => decideClaim(c, i, now, 0);
      })(b),
  ),
  mutant(
    'skew-wrong-sign',
    'time',
    'clockSkewMs added the wrong way: takeover before the deadline',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => decideClaim(c, i, now, -skew);
      })(b),
  ),
  mutant(
    'deadline-exclusive',
    'time',
    'a lease is dead only after its deadline, not at it (< for <=)',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => decideClaim(c, i, now, skew + 1);
      })(b),
  ),
  mutant(
    'wall-clock',
    'time',
    "decisions use Date.now() instead of the store's clock",
    (b) =>
      new (class extends Base {
        protected override now = () => Date.now();
      })(b),
  ),
  mutant(
    'lease-unit-mistake',
    'time',
    'the lease length is taken as seconds (a deadline 1000 times too far)',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, _c, input, now) => ({ ...w, leaseExpiresAt: now + input.leaseMs * 1000 }));
      })(b),
  ),
  mutant(
    'duplicate-claim-extends-lease',
    'time',
    "a duplicate claim extends the owner's lease by the claimant's leaseMs",
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (current, input, now, skew) => {
          const step = decideClaim(current, input, now, skew);
          if (step.value.outcome !== 'in_flight') return step;
          const write = { ...step.value.record, leaseExpiresAt: now + input.leaseMs };
          return { write, value: { outcome: 'in_flight', record: write } };
        };
      })(b),
  ),
  mutant(
    'renew-from-old-deadline',
    'time',
    'renew adds leaseMs to the old deadline instead of now',
    (b) =>
      new (class extends Base {
        protected override decideFinish = rewriteFinish((w, current, _l, op) =>
          op.op === 'renew' ? { ...w, leaseExpiresAt: (current.leaseExpiresAt ?? 0) + op.leaseMs } : w,
        );
      })(b),
  ),
  mutant(
    'renew-noop',
    'time',
    'renew answers a lease but writes nothing',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (current, lease, op, now) => {
          const step = decideFinish(current, lease, op, now);
          return op.op === 'renew' ? { value: step.value } : step;
        };
      })(b),
  ),
  mutant(
    'renew-keeps-first-length',
    'time',
    "renew extends by the claim's lease length, not the renewal's",
    (b) =>
      new (class extends Base {
        protected override decideFinish = rewriteFinish((w, current, _l, op, now) =>
          op.op === 'renew' ? { ...w, leaseExpiresAt: now + ((current.leaseExpiresAt ?? 0) - current.claimedAt) } : w,
        );
      })(b),
  ),
  // --- retention
  mutant(
    'expiry-ignored-on-claim',
    'retention',
    'a record past retention still answers completed',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => {
          if (c === undefined || c.status === 'in_flight') return decideClaim(c, i, now, skew);
          const { expiresAt: _e, ...kept } = c;
          return decideClaim(kept, i, now, skew);
        };
      })(b),
  ),
  mutant(
    'expiry-boundary-exclusive',
    'retention',
    'a claim counts a record as past retention only after expiresAt, not at it',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => decideClaim(c?.expiresAt === now ? { ...c, expiresAt: now + 1 } : c, i, now, skew);
      })(b),
  ),
  mutant(
    'retention-from-claim',
    'retention',
    'expiresAt counted from claimedAt instead of completion',
    (b) =>
      new (class extends Base {
        protected override decideFinish = rewriteFinish((w, _c, _l, op, _now) =>
          w.status !== 'in_flight' && 'retentionMs' in op ? { ...w, expiresAt: w.claimedAt + op.retentionMs } : w,
        );
      })(b),
  ),
  mutant(
    'retention-never',
    'retention',
    'finished records get no expiresAt',
    (b) =>
      new (class extends Base {
        protected override decideFinish = rewriteFinish((w) => {
          if (w.status === 'in_flight') return w;
          const { expiresAt: _e, ...kept } = w;
          return kept;
        });
      })(b),
  ),
  mutant(
    'attempt-survives-retention',
    'retention',
    'the attempt count continues past retention',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, current) => (current ? { ...w, attempt: current.attempt + 1 } : w));
      })(b),
  ),
  mutant(
    'attempt-frozen',
    'retention',
    'the attempt count is never incremented',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w) => ({ ...w, attempt: 1 }));
      })(b),
  ),
  // --- sweep
  mutant(
    'sweep-takes-live-leases',
    'sweep',
    'sweep removes every in_flight record',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          const counts = await super.sweep(ctx);
          for (const name of [...this.backend.keys()]) if (this.load(name)?.status === 'in_flight') this.backend.delete(name), counts.deadLeases++;
          return counts;
        }
      })(b),
  ),
  mutant(
    'sweep-takes-finished',
    'sweep',
    'sweep removes finished records still within retention',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          const counts = await super.sweep(ctx);
          for (const name of [...this.backend.keys()]) if (this.load(name)?.status === 'succeeded') this.backend.delete(name), counts.expired++;
          return counts;
        }
      })(b),
  ),
  mutant(
    'sweep-miscounts',
    'sweep',
    'sweep counts dead leases as expired',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          const c = await super.sweep(ctx);
          return { expired: c.expired + c.deadLeases, deadLeases: 0 };
        }
      })(b),
  ),
  mutant(
    'sweep-keeps-dead-leases',
    'sweep',
    'sweep removes only records past retention',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          const counts = { expired: 0, deadLeases: 0 };
          for (const name of [...this.backend.keys()]) {
            const r = this.load(name);
            if (r && isExpired(r, ctx.now())) this.backend.delete(name), counts.expired++;
          }
          return counts;
        }
      })(b),
  ),
  mutant(
    'sweep-deletes-corrupt',
    'sweep',
    'sweep deletes records it cannot parse',
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          for (const name of [...this.backend.keys()]) {
            try {
              this.load(name);
            } catch (error) {
              // The mistake under test: unreadable means garbage.
              if (!(error instanceof CorruptRecordError)) throw error;
              this.backend.delete(name);
            }
          }
          return super.sweep(ctx);
        }
      })(b),
  ),
  mutant(
    'sweep-wall-clock',
    'sweep',
    "sweep judges by Date.now() instead of the store's clock",
    (b) =>
      new (class extends Base {
        override async sweep(ctx: DriverContext) {
          return super.sweep({ ...ctx, now: () => Date.now() });
        }
      })(b),
  ),
  // Synchronous backends: every competing call ends before the sweep scans, so only the
  // suite's forced interleavings (tests/interleavings.ts) put a rival in the window.
  mutant(
    'sweep-delete-unconditional',
    'sweep',
    "sweep's delete ignores the record it read: a takeover, renewal or completion since the read is deleted",
    (b) =>
      new (class extends Base {
        protected override readonly scanning: ScanPrimitives = { ...new MemoryDriver(b).parts, delete: async (name) => b.delete(name) };
      })(b),
  ),
  mutant('composed-sweep-delete-unconditional', 'sweep', 'an adapter of transactional parts (createStore) whose delete ignores `expected`', (b) =>
    composeDriver({ ...new MemoryDriver(b).parts, delete: async (name) => b.delete(name) }),
  ),
  mutant(
    'composed-cas-replace-unconditional',
    'atomicity',
    'an adapter of synchronous CAS parts (createStore) whose replace ignores the version: a finish overwrites a takeover',
    (b) => {
      const cas = memoryCas(b, { create: true, replace: false }, true);
      const { capabilities, scan, delete: remove, close } = new MemoryDriver(b).parts;
      return composeDriver({ capabilities, scan, read: (name) => cas.read(name), delete: remove, close, create: cas.create, replace: cas.replace });
    },
  ),
  // --- dedup
  mutant(
    'dedup-any-ignored',
    'dedup',
    'dedupOn "any" is ignored: a failure is always retried',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => decideClaim(c, { ...i, dedupOn: 'success' }, now, skew);
      })(b),
  ),
  mutant(
    'dedup-failure-final',
    'dedup',
    'a failure is always final, as if dedupOn were "any"',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => decideClaim(c, { ...i, dedupOn: 'any' }, now, skew);
      })(b),
  ),
  // --- results
  mutant(
    'result-dropped',
    'results',
    'complete does not store the result',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(c, l, op.op === 'complete' ? { op: 'complete', retentionMs: op.retentionMs } : op, now);
      })(b),
  ),
  mutant(
    'falsy-result-dropped',
    'results',
    'a result of 0, false, "" or null is dropped (truthiness test)',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(c, l, op.op === 'complete' && !op.result ? { op: 'complete', retentionMs: op.retentionMs } : op, now);
      })(b),
  ),
  mutant(
    'error-dropped',
    'results',
    'fail does not store the error',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(c, l, op.op === 'fail' ? { op: 'fail', retentionMs: op.retentionMs } : op, now);
      })(b),
  ),
  mutant(
    'repeat-finish-rewrites',
    'results',
    'a complete or fail repeated after a lost reply writes again (new time, new result)',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) => {
          const again = c && c.fence === l.fence && c.runId === l.runId && c.status !== 'in_flight' && (op.op === 'complete' || op.op === 'fail');
          return decideFinish(again ? { ...c, status: 'in_flight', leaseExpiresAt: now } : c, l, op, now);
        };
      })(b),
  ),
  mutant(
    'repeat-finish-raises',
    'results',
    'a complete or fail repeated after a lost reply raises LEASE_LOST',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) => {
          if (c && c.status !== 'in_flight') throw new LeaseLostError(l.key, c);
          return decideFinish(c, l, op, now);
        };
      })(b),
  ),
  mutant(
    'finish-over-own-finish',
    'results',
    'complete over its own failed record (or fail over success) is allowed',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(
            c && c.status !== 'in_flight' && (op.op === 'complete' || op.op === 'fail') ? { ...c, status: 'in_flight', leaseExpiresAt: now } : c,
            l,
            op,
            now,
          );
      })(b),
  ),
  mutant(
    'renew-revives-finished',
    'results',
    'renew on its own finished record puts it back in flight',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(c && op.op === 'renew' ? { ...c, status: 'in_flight', leaseExpiresAt: now } : c, l, op, now);
      })(b),
  ),
  mutant(
    'release-frees-finished',
    'results',
    'release on its own finished record frees the key, losing the result',
    (b) =>
      new (class extends Base {
        protected override decideFinish: FinishDecision = (c, l, op, now) =>
          decideFinish(c && op.op === 'release' ? { ...c, status: 'in_flight', leaseExpiresAt: now } : c, l, op, now);
      })(b),
  ),
  // --- keys
  mutant('keys-case-folded', 'keys', 'keys compared case-insensitively (a case-folding collation)', (b) => new FoldedKeys(b, (k) => k.toLowerCase())),
  mutant('keys-trimmed', 'keys', 'keys trimmed and inner whitespace collapsed', (b) => new FoldedKeys(b, (k) => k.trim().replace(/\s+/g, ' '))),
  mutant('keys-nfc', 'keys', 'keys normalised to NFKC before storing', (b) => new FoldedKeys(b, (k) => k.normalize('NFKC'))),
  mutant('keys-truncated', 'keys', 'keys truncated to 250 characters (a memcached-style limit)', (b) => new FoldedKeys(b, (k) => k.slice(0, 250))),
  mutant(
    'hash-keys-ignored',
    'keys',
    'the record stores the raw key even under hashKeys',
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, _c, input) => ({ ...w, key: input.key }));
      })(b),
  ),
  // --- fingerprints
  mutant(
    'fingerprint-ignored',
    'fingerprints',
    'a different fingerprint is not compared',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => {
          const { fingerprint: _f, ...rest } = i;
          return rewriteClaim((w) => (i.fingerprint !== undefined ? { ...w, fingerprint: i.fingerprint } : w))(c, rest, now, skew);
        };
      })(b),
  ),
  mutant(
    'fingerprint-checked-past-retention',
    'fingerprints',
    'a record past retention still refuses another fingerprint',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => {
          if (c && !i.force && i.fingerprint !== undefined && c.fingerprint !== undefined && c.fingerprint !== i.fingerprint)
            decideClaim({ ...c, expiresAt: undefined }, i, now, skew);
          return decideClaim(c, i, now, skew);
        };
      })(b),
  ),
  mutant(
    'force-checks-fingerprint',
    'fingerprints',
    'force still refuses another fingerprint',
    (b) =>
      new (class extends Base {
        protected override decideClaim: ClaimDecision = (c, i, now, skew) => {
          if (i.force) decideClaim(c, { ...i, force: false }, now, skew);
          return decideClaim(c, i, now, skew);
        };
      })(b),
  ),
  mutant(
    'fingerprint-kept-on-takeover',
    'fingerprints',
    "a takeover keeps the previous record's fingerprint",
    (b) =>
      new (class extends Base {
        protected override decideClaim = rewriteClaim((w, current) => (current?.fingerprint !== undefined ? { ...w, fingerprint: current.fingerprint } : w));
      })(b),
  ),
  // --- listing
  mutant(
    'list-no-cursor-after-full-page',
    'listing',
    'a full page comes without a cursor: the rest is never listed',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery, ctx: DriverContext): Promise<ListPage> {
          return { records: (await super.list(q, ctx)).records };
        }
      })(b),
  ),
  mutant(
    'list-skips-at-cursor',
    'listing',
    'the next page starts after the cursor, which already named an unlisted record',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery, ctx: DriverContext): Promise<ListPage> {
          const names = [...this.backend.keys()].sort();
          const from = q.cursor === undefined ? 0 : names.findIndex((n) => n > q.cursor!);
          return super.list({ ...q, ...(from >= 0 && q.cursor !== undefined ? { cursor: names[from]! } : {}) }, ctx);
        }
      })(b),
  ),
  mutant(
    'list-offset-cursor',
    'listing',
    'the cursor is an offset into the sorted names: a deletion meanwhile skips a record',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery): Promise<ListPage> {
          const names = [...this.backend.keys()].sort();
          const from = q.cursor === undefined ? 0 : Number(q.cursor);
          const records: IdemRecord[] = [];
          for (let at = from; at < names.length; at++) {
            if (records.length === q.limit) return { records, cursor: String(at) };
            const r = this.load(names[at]!);
            if (r && q.filter(r)) records.push(r);
          }
          return { records };
        }
      })(b),
  ),
  mutant(
    'list-ignores-filter',
    'listing',
    "list ignores core's filter (status, expiry)",
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery, ctx: DriverContext) {
          return super.list({ ...q, filter: () => true }, ctx);
        }
      })(b),
  ),
  mutant(
    'list-ignores-limit',
    'listing',
    'list returns everything in one page',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery, ctx: DriverContext) {
          return super.list({ ...q, limit: 1_000_000 }, ctx);
        }
      })(b),
  ),
  mutant(
    'list-never-ends',
    'listing',
    'the last page hands back a cursor to the start',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery, ctx: DriverContext): Promise<ListPage> {
          const page = await super.list(q, ctx);
          return page.cursor === undefined ? { records: page.records, cursor: '' } : page;
        }
      })(b),
  ),
  mutant(
    'list-limit-counts-scanned',
    'listing',
    'the limit counts records scanned, and a page with no match ends the listing',
    (b) =>
      new (class extends Base {
        override async list(q: ListQuery): Promise<ListPage> {
          const names = [...this.backend.keys()].sort().filter((n) => q.cursor === undefined || n >= q.cursor);
          const scanned = names.slice(0, q.limit);
          const records = scanned.map((n) => this.load(n)!).filter((r) => q.filter(r));
          return records.length > 0 && names.length > q.limit ? { records, cursor: names[q.limit]! } : { records };
        }
      })(b),
  ),
  // --- corrupt records
  mutant(
    'corrupt-read-as-absent',
    'corrupt',
    'an unreadable record reads as absent, so a claim overwrites it',
    (b) =>
      new (class extends Base {
        protected override load(name: string) {
          try {
            return super.load(name);
          } catch (error) {
            // The mistake under test: corrupt treated as missing.
            if (error instanceof CorruptRecordError) return undefined;
            throw error;
          }
        }
      })(b),
  ),
  mutant(
    'corrupt-overwritten-by-force',
    'corrupt',
    'a forced claim overwrites an unreadable record',
    (b) =>
      new (class extends Base {
        override claim: Driver['claim'] = async (input, ctx) => {
          if (input.force) {
            try {
              this.load(input.name);
            } catch (error) {
              // The mistake under test: force clears what it cannot read.
              if (!(error instanceof CorruptRecordError)) throw error;
              this.backend.delete(input.name);
            }
          }
          return (await this.update(input.name, (c) => decideClaim(c, input, ctx.now(), ctx.clockSkewMs))).value;
        };
      })(b),
  ),
  mutant(
    'finish-over-corrupt',
    'corrupt',
    "a finish that cannot read the record writes over it on the lease's word",
    (b) =>
      new (class extends Base {
        override finish: Driver['finish'] = async (lease, op, ctx) => {
          try {
            this.load(lease.name);
          } catch (error) {
            // The mistake under test: decide on the lease's copy of the record.
            if (!(error instanceof CorruptRecordError)) throw error;
            const decided = decideFinish(lease.record, lease, op, ctx.now());
            if (decided.write !== undefined) this.backend.set(lease.name, serializeRecord(decided.write));
            return decided.value;
          }
          return (await this.update(lease.name, (c) => decideFinish(c, lease, op, ctx.now()))).value;
        };
      })(b),
  ),
  mutant(
    'unknown-version-accepted',
    'corrupt',
    "a record of another schema version is read as if it were this one's",
    (b) =>
      new (class extends Base {
        protected override load(name: string) {
          const raw = this.backend.get(name);
          if (typeof raw === 'string' && raw.startsWith('{') && raw.endsWith('}')) {
            try {
              const r = JSON.parse(raw) as { v?: unknown };
              if (r.v !== 1) return parseRecord(name, JSON.stringify({ ...r, v: 1 }));
            } catch (error) {
              if (!(error instanceof SyntaxError)) throw error; // not JSON: left to the real parser below
            }
          }
          return super.load(name);
        }
      })(b),
  ),
  // --- administrative removal
  mutant(
    'delete-always-true',
    'admin',
    'delete answers true whether or not something was there',
    (b) =>
      new (class extends Base {
        override async remove(name: string) {
          await super.remove(name);
          return true;
        }
      })(b),
  ),
];
