// The driver: claim and finish as one conditional statement when core's decision does not need the
// stored record, else one transaction around core's decision (atomicUpdate); read, list, sweep and
// remove as single statements. Every statement is in sql.ts; connection.ts runs them.
import {
  BackendUnavailableError,
  backendError,
  claimWith,
  CorruptRecordError,
  decideClaim,
  decideFinish,
  finishWith,
  IdemError,
  InvalidArgumentError,
  isSweepable,
  parseRecord,
  serializeRecord,
  STORAGE_NAME,
  type AtomicUpdate,
  type ClaimInput,
  type ClaimOutcome,
  type CorruptEntry,
  type Driver,
  type DriverContext,
  type FinishOp,
  type FinishValue,
  type IdemRecord,
  type Lease,
  type ListPage,
  type ListQuery,
  type SweepCounts,
} from '@idem/core/adapter';
import { Ambiguous, type Connections, definite, refused } from './connection.js';
import { atServerTime, columns, labelsJson, type PinnedClock } from './server-time.js';
import type { Shape, Statements } from './sql.js';

/** Rows per list query and per sweep batch: bounded work per statement. */
const BATCH = 500;
const MAX_ATTEMPTS = 32;
const RETRY: unique symbol = Symbol('retry');

export class PostgresDriver implements Driver {
  readonly kind = 'postgres';
  readonly capabilities = { nativeExpiry: false, clock: 'server', sharedAcrossProcesses: true } as const;

  constructor(
    private readonly db: Connections,
    private readonly owned: boolean,
    private readonly sql: Statements,
    private readonly clock: PinnedClock,
  ) {}

  /** The one-statement claim's and finish's texts by shape (see shaped). */
  private readonly fresh = new Map<number, string>();
  private readonly finishes = new Map<number, string>();

  async createSchema(): Promise<void> {
    await this.db.run('createSchema', async (c) => {
      // One transaction holding an advisory lock on the table's name: two stores creating one
      // table at once would otherwise race inside CREATE … IF NOT EXISTS (a duplicate error).
      await c.query({ text: 'BEGIN' });
      try {
        await c.query({ text: 'SELECT pg_advisory_xact_lock(hashtext($1))', values: [this.sql.schema[1]] });
        for (const text of this.sql.schema) await c.query({ text });
        await c.query({ text: 'COMMIT' });
      } catch (error) {
        await c.query({ text: 'ROLLBACK' }).catch(() => {});
        throw error;
      }
    });
  }

  private failure(error: unknown, what: string): never {
    if (error instanceof IdemError) throw error;
    throw backendError(error, `${what} on PostgreSQL`, refused(error));
  }

  /**
   * The atomic step, one transaction:
   *   BEGIN
   *   SELECT server time, row FOR UPDATE  -> the row is ours until COMMIT (absent: nothing locked)
   *   core decides at the server's time
   *   UPDATE (or INSERT … ON CONFLICT DO NOTHING when absent: 0 rows means another
   *     transaction inserted first; roll back and decide again on its row)
   *   COMMIT                              -> no answer: ambiguous; read back and recognise our
   *                                          record by its exact bytes, else decide again
   * The time is read before the lock is granted: a wait for the lock makes it early, never late,
   * so a lease is never judged dead too soon.
   */
  readonly atomicUpdate: AtomicUpdate = async (name, step) => {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let written: Buffer | undefined;
      let decidedValue: unknown;
      try {
        const outcome = await this.db.run(`update of ${name}`, async (c, deadline) => {
          await this.db.query(c, 'BEGIN');
          let done = false;
          try {
            const row = (await this.db.query(c, this.sql.lock, [name])).rows[0]!;
            const current = row.body == null ? undefined : parseRecord(name, row.body as Buffer);
            const decided = this.clock.at(Number(row.now), () => step(current));
            if (decided.write === undefined) {
              await this.db.query(c, 'ROLLBACK');
              done = true;
              return { value: decided.value };
            }
            const bytes = Buffer.from(serializeRecord(decided.write));
            const values = [name, bytes, ...columns(decided.write)];
            if (current === undefined) {
              if ((await this.db.query(c, this.sql.insert, values)).rowCount === 0) {
                await this.db.query(c, 'ROLLBACK');
                done = true;
                return RETRY;
              }
            } else {
              await this.db.query(c, this.sql.update, values);
            }
            if (deadline.passed) throw new BackendUnavailableError(`update of ${name}: past ${this.db.timeoutMs} ms, rolled back`);
            written = bytes;
            decidedValue = decided.value;
            done = true;
            try {
              await this.db.query(c, 'COMMIT');
            } catch (error) {
              if (definite(error)) throw error;
              throw new Ambiguous(error);
            }
            return { value: decided.value };
          } finally {
            // A decision that threw (LEASE_LOST, KEY_REUSE_MISMATCH, CORRUPT_RECORD) wrote nothing: roll back, keep the connection.
            if (!done && !deadline.passed) await this.db.query(c, 'ROLLBACK').catch(() => {});
          }
        });
        if (outcome === RETRY) continue;
        return outcome as { value: never };
      } catch (error) {
        if (!(error instanceof Ambiguous) || written === undefined) this.failure(error, `update of ${name}`);
        // The COMMIT's answer was lost: it may have landed. Ours is recognised by its exact bytes
        // (runId, fence and times); anything else means it did not, and the step runs again.
        const back = await this.readRow(name);
        if (back?.body !== undefined && Buffer.compare(back.body, written) === 0) return { value: decidedValue as never };
      }
    }
    throw new BackendUnavailableError(`update of ${name}: gave up after ${MAX_ATTEMPTS} attempts`);
  };

  /**
   * A claim. A fresh key is one round trip, its own transaction:
   *   INSERT core's record for an absent key at the server's time, ON CONFLICT DO NOTHING
   *     -> the time: ours, claimed then
   *     -> nothing: something is stored; the transaction above decides on it
   *     -> no answer: the transaction above decides too; if the INSERT landed, it finds this
   *        claim's own live record (same runId) and hands its lease back
   */
  async claim(input: ClaimInput, ctx: DriverContext): Promise<ClaimOutcome> {
    const decide = (now: number) => decideClaim(undefined, input, now, ctx.clockSkewMs);
    const write = atServerTime((now) => decide(now).write);
    if (write !== undefined) {
      const now = await this.oneShot(`claim of ${input.name}`, this.shaped('insertFresh', write.shape), [input.name, ...write.values]);
      if (now !== undefined) return decide(now).value;
    }
    return claimWith(this.atomicUpdate, input, ctx);
  }

  /**
   * A finish. On the record the lease wrote, one round trip, its own transaction:
   *   UPDATE to core's decision at the server's time, only if the stored bytes are still the lease's
   *     -> the time: done, decided then
   *     -> nothing: the record changed (a takeover, a sweep, corrupt bytes); the transaction decides
   *     -> no answer: the transaction decides too; a repeated complete or fail is answered, not redone
   * A record already past a retention end (released) is left to the transaction: its decision depends on the time.
   */
  async finish(lease: Lease, op: FinishOp, ctx: DriverContext): Promise<FinishValue> {
    const guess = lease.record;
    if (guess?.status === 'in_flight' && guess.expiresAt === undefined && guess.fence === lease.fence && guess.runId === lease.runId) {
      const decide = (now: number) => decideFinish(guess, lease, op, now);
      const write = atServerTime((now) => decide(now).write);
      if (write !== undefined) {
        const now = await this.oneShot(`finish of ${lease.name}`, this.shaped('updateIf', write.shape), [
          lease.name,
          ...write.values,
          Buffer.from(serializeRecord(guess)),
        ]);
        if (now !== undefined) return decide(now).value;
      }
    }
    return finishWith(this.atomicUpdate, lease, op, ctx);
  }

  /** The text of a one-statement write for a record's shape, built once per shape. */
  private shaped(statement: 'insertFresh' | 'updateIf', shape: Shape): string {
    const id = (shape.fields * 2 + Number(shape.expiresAfter)) * 2 + Number(shape.sweepAfter);
    const texts = statement === 'insertFresh' ? this.fresh : this.finishes;
    let text = texts.get(id);
    if (text === undefined) {
      text = this.sql[statement](shape);
      texts.set(id, text);
    }
    return text;
  }

  /** One conditional statement; the server's time if it wrote, undefined if not or if its answer was lost. */
  private async oneShot(what: string, text: string, values: unknown[]): Promise<number | undefined> {
    try {
      const rows = await this.db.run(what, async (c) => {
        try {
          return (await this.db.query(c, text, values)).rows;
        } catch (error) {
          if (definite(error)) throw error;
          throw new Ambiguous(error);
        }
      });
      return rows.length === 1 ? Number(rows[0]!.now) : undefined;
    } catch (error) {
      if (error instanceof Ambiguous) return undefined;
      this.failure(error, what);
    }
  }

  private async readRow(name: string): Promise<{ now: number; body?: Buffer }> {
    try {
      const row = await this.db.run(`read of ${name}`, async (c) => (await this.db.query(c, this.sql.read, [name])).rows[0]!);
      return { now: Number(row.now), ...(row.body != null ? { body: row.body as Buffer } : {}) };
    } catch (error) {
      this.failure(error, `read of ${name}`);
    }
  }

  /** The live record: past retention by the server's clock counts as absent. */
  async read(name: string): Promise<IdemRecord | undefined> {
    const { now, body } = await this.readRow(name);
    if (body === undefined) return undefined;
    const record = parseRecord(name, body);
    return record.expiresAt !== undefined && record.expiresAt <= now ? undefined : record;
  }

  /** Live records in name order, a keyset page at a time; labels are matched in SQL through the labels index. */
  async list(query: ListQuery): Promise<ListPage> {
    if (query.cursor !== undefined && !STORAGE_NAME.test(query.cursor)) throw new InvalidArgumentError('cursor must be a string from a previous page');
    const records: IdemRecord[] = [];
    const corrupt: CorruptEntry[] = [];
    const page = (cursor?: string): ListPage => ({ records, ...(corrupt.length > 0 ? { corrupt } : {}), ...(cursor !== undefined ? { cursor } : {}) });
    const labels = query.labels !== undefined ? labelsJson(query.labels) : null;
    let after = query.cursor ?? null;
    for (;;) {
      let rows: Record<string, unknown>[];
      try {
        rows = await this.db.run('list', async (c) => (await this.db.query(c, this.sql.list, [after, labels, BATCH])).rows);
      } catch (error) {
        this.failure(error, 'list');
      }
      const found = rows.filter((r) => r.name != null);
      for (const [i, row] of found.entries()) {
        const name = row.name as string;
        let record: IdemRecord;
        try {
          record = parseRecord(name, row.body as Buffer);
        } catch (error) {
          if (!(error instanceof CorruptRecordError)) throw error;
          corrupt.push({ name, reason: (error as Error).message });
          continue;
        }
        if (!query.filter(record)) continue;
        records.push(record);
        if (records.length === query.limit) return i < found.length - 1 || found.length === BATCH ? page(name) : page();
      }
      if (found.length < BATCH) return page();
      after = found[found.length - 1]!.name as string;
    }
  }

  /** Deletes what is past retention or holds a dead lease, in batches through the sweep_at index. */
  async sweep(): Promise<SweepCounts> {
    const counts: SweepCounts = { expired: 0, deadLeases: 0 };
    for (;;) {
      let rows: Record<string, unknown>[];
      try {
        rows = await this.db.run('sweep', async (c) => (await this.db.query(c, this.sql.sweep, [BATCH])).rows);
      } catch (error) {
        this.failure(error, 'sweep');
      }
      for (const row of rows) {
        // Only rows the store wrote have a sweep time: every body here parses.
        const record = parseRecord('(swept)', row.body as Buffer);
        const now = Number(row.now);
        if (!isSweepable(record, now)) continue;
        if (record.expiresAt !== undefined && record.expiresAt <= now) counts.expired++;
        else counts.deadLeases++;
      }
      if (rows.length < BATCH) return counts;
    }
  }

  async remove(name: string): Promise<boolean> {
    try {
      return await this.db.run(`delete of ${name}`, async (c) => ((await this.db.query(c, this.sql.remove, [name])).rowCount ?? 0) > 0);
    } catch (error) {
      this.failure(error, `delete of ${name}`);
    }
  }

  async writeRaw(name: string, bytes: string | Uint8Array): Promise<void> {
    await this.db.run('writeRaw', async (c) => this.db.query(c, this.sql.raw, [name, Buffer.from(bytes)]));
  }

  async close(): Promise<void> {
    if (this.owned) await this.db.pool.end();
  }
}
