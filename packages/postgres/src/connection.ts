// The connections: one operation on one pooled connection within the store's deadline, each
// statement prepared once per connection, every reply that carries the server's time sharpening
// the clock estimate, and what a pg error means (a definite answer, a refusal, or a lost answer).
import { createHash } from 'node:crypto';
import { BackendUnavailableError, backendError, IdemError, type ServerClock } from '@idem/core/adapter';

/** A statement's answer, as pg gives it. */
export interface Rows {
  rows: Record<string, unknown>[];
  rowCount: number | null;
}

/** What the store needs of a `pg` client: `pg.PoolClient` is one. */
export interface PgClient {
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<Rows>;
  /** Back to the pool; with an error, the connection is destroyed instead. */
  release(error?: Error | boolean): void;
  /** pg emits "error" on a checked-out client whose connection dies between statements. */
  on?(event: 'error', listener: (error: Error) => void): unknown;
  off?(event: 'error', listener: (error: Error) => void): unknown;
}

/** What the store needs of a `pg` pool: `new pg.Pool(…)` is one. */
export interface PgPool {
  connect(): Promise<PgClient>;
  end(): Promise<void>;
}

/** A definite answer from the server (an SQLSTATE) that says nothing was committed, as opposed to a lost connection. */
export const definite = (error: unknown): boolean => {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57P)/.test(code);
};
/** Authentication, missing database or table, permission: asking again will not help. */
export const refused = (error: unknown): boolean => /^(28|3D|42)/.test(String((error as { code?: unknown })?.code ?? ''));

/** A COMMIT (or an autocommit INSERT) sent whose answer never came: it may have landed. */
export class Ambiguous extends Error {
  constructor(readonly cause: unknown) {
    super('outcome unknown');
  }
}

/** The store's pool, bounded by its deadline. */
export class Connections {
  constructor(
    readonly pool: PgPool,
    readonly timeoutMs: number,
    private readonly estimate: ServerClock,
  ) {}

  /**
   * One operation on one pooled connection, bounded by timeoutMs (the wait for a connection
   * included). A connection that failed, or that the deadline abandoned mid-transaction, is
   * destroyed rather than returned: the server then rolls back whatever it held open.
   */
  run<T>(what: string, body: (c: PgClient, deadline: { passed: boolean }) => Promise<T>): Promise<T> {
    const deadline = { passed: false };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        deadline.passed = true;
        reject(new BackendUnavailableError(`${what}: no answer from PostgreSQL within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    const work = (async () => {
      const c = await this.pool.connect().catch((error: unknown) => {
        throw backendError(error, `${what}: connecting to PostgreSQL`, refused(error));
      });
      let broken: Error | undefined;
      // A connection that dies while held (between statements) fails the next statement anyway;
      // unheard, pg's "error" event would be an uncaught exception.
      const lost = (error: Error) => {
        broken = error;
      };
      c.on?.('error', lost);
      try {
        if (deadline.passed) throw new BackendUnavailableError(`${what}: no connection within ${this.timeoutMs} ms`);
        return await body(c, deadline);
      } catch (error) {
        if (!definite(error) && !(error instanceof IdemError)) broken = error instanceof Error ? error : new Error(String(error));
        throw error;
      } finally {
        c.off?.('error', lost);
        c.release(deadline.passed ? new Error('idem: abandoned at the deadline') : broken);
      }
    })();
    work.catch(() => {}); // after the deadline nobody awaits it
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  /** A statement on a connection; its reply's `now` (when it has one) sharpens the clock estimate. */
  async query(c: PgClient, text: string, values: unknown[] = []): Promise<Rows> {
    const sent = Date.now();
    // Named: each connection parses and plans a statement once, then only binds.
    const result = await c.query(values.length > 0 ? { name: statementName(text), text, values } : { text });
    const now = result.rows[0]?.now;
    if (now !== undefined && now !== null) this.estimate.observe(Number(now), sent, Date.now(), 1);
    return result;
  }
}

const names = new Map<string, string>();
/** A prepared statement's name: the same text, the same name, on every connection. */
function statementName(text: string): string {
  let name = names.get(text);
  if (name === undefined) {
    name = `idem_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return name;
}
