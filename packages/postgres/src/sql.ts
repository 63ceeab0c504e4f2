// The table and every statement the store sends, in one place: what a DBA reviews. Identifiers
// (schema, table) are checked and quoted once here; every value travels as a bind parameter.
import { InvalidArgumentError } from '@idem/core/adapter';
import { IDENTIFIER } from './url.js';

export const DEFAULT_SCHEMA = 'public';
export const DEFAULT_TABLE = 'idem_records';

export function checkIdentifier(what: 'schema' | 'table', value: unknown): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new InvalidArgumentError(
      `${what} must be a lower-case identifier (a-z, 0-9, _; not starting with a digit; at most 63), got ${JSON.stringify(String(value)).slice(0, 80)}`,
    );
  }
  return value;
}

/** The server's clock in epoch milliseconds: the one clock every lease and retention is judged by. */
const NOW = `floor(extract(epoch from clock_timestamp()) * 1000)::bigint`;
/**
 * The same clock when the statement began (its message arrived): one value however often the
 * statement reads it, so the one-statement claim and finish need no CTE to hold it.
 */
const STATEMENT_NOW = `floor(extract(epoch from statement_timestamp()) * 1000)::bigint`;

/**
 * How a record written at the server's time is sent: its bytes cut into `fields + 1` text pieces,
 * with the server's time plus an offset between each two (the record's times); expires_at and
 * sweep_at each a number, or an offset from the server's time when `expiresAfter` / `sweepAfter`.
 */
export interface Shape {
  fields: number;
  expiresAfter: boolean;
  sweepAfter: boolean;
}

/**
 * The columns (body, expires_at, sweep_at, labels) of a record written at the server's time, as
 * SQL over the parameters from $first: pieces and offsets alternating (p0, d0, p1, …, pN), then
 * expires_at, sweep_at and labels. Plain expressions, so that the statement stays a plain INSERT
 * or UPDATE (a CTE or an aggregate here costs the server more than the row's write).
 */
function timed(shape: Shape, first: number): string {
  let at = first;
  const body = [`$${at++}::text`];
  for (let i = 0; i < shape.fields; i++) body.push(`(${STATEMENT_NOW} + $${at++}::bigint)::text`, `$${at++}::text`);
  const column = (after: boolean) => (after ? `${STATEMENT_NOW} + $${at++}::bigint` : `$${at++}::bigint`);
  const expires = column(shape.expiresAfter);
  const sweep = column(shape.sweepAfter);
  return `convert_to(${body.join(' || ')}, 'UTF8'), ${expires}, ${sweep}, $${at}::jsonb`;
}

/** Parameters `timed` reads from $first on, for a shape: the next free one is first + this. */
const timedCount = (shape: Shape) => 2 * shape.fields + 4;

/** Every statement of one table. */
export function statements(schema: string, table: string) {
  const t = `"${schema}"."${table}"`;
  return {
    /**
     * The schema, idempotent. name: sha256(key) in hex; body: the record's bytes (core's one
     * layout); expires_at: end of retention (list hides what is past it); sweep_at: when sweep may
     * remove the record (retention end, or a lease deadline while in flight; NULL for bytes that
     * are not a record, which sweep leaves for a human); labels: the record's labels, for list
     * (a backslash or NUL in a value is escaped: jsonb holds no NUL).
     */
    schema: [
      `CREATE SCHEMA IF NOT EXISTS "${schema}"`,
      `CREATE TABLE IF NOT EXISTS ${t} (
  name text COLLATE "C" PRIMARY KEY,
  body bytea NOT NULL,
  expires_at bigint,
  sweep_at bigint,
  labels jsonb
)`,
      `CREATE INDEX IF NOT EXISTS "${table}_sweep_at" ON ${t} (sweep_at) WHERE sweep_at IS NOT NULL`,
      `CREATE INDEX IF NOT EXISTS "${table}_labels" ON ${t} USING gin (labels jsonb_path_ops) WHERE labels IS NOT NULL`,
    ],
    /**
     * A fresh key in one round trip (its own transaction): the record written at the server's
     * time (see timed), only if nothing is stored; a row (the time) comes back only if it was.
     */
    insertFresh: (shape: Shape) => `INSERT INTO ${t} (name, body, expires_at, sweep_at, labels) VALUES ($1, ${timed(shape, 2)})
  ON CONFLICT (name) DO NOTHING RETURNING ${STATEMENT_NOW} AS now`,
    /**
     * A finish in one round trip (its own transaction): the record written at the server's time,
     * only if the stored bytes are still the last parameter (the record the lease wrote); the time
     * comes back only if it was.
     */
    updateIf: (shape: Shape) => `UPDATE ${t} SET (body, expires_at, sweep_at, labels) = (${timed(shape, 2)})
  WHERE name = $1 AND body = $${2 + timedCount(shape)} RETURNING ${STATEMENT_NOW} AS now`,
    /** Inside a transaction: the row locked until COMMIT (if there is one), and the server's time. */
    lock: `SELECT n.now, r.body FROM (SELECT ${NOW} AS now) n LEFT JOIN LATERAL (SELECT body FROM ${t} WHERE name = $1 FOR UPDATE) r ON true`,
    insert: `INSERT INTO ${t} (name, body, expires_at, sweep_at, labels) VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (name) DO NOTHING`,
    update: `UPDATE ${t} SET body = $2, expires_at = $3, sweep_at = $4, labels = $5::jsonb WHERE name = $1`,
    read: `SELECT ${NOW} AS now, (SELECT body FROM ${t} WHERE name = $1) AS body`,
    raw: `INSERT INTO ${t} (name, body) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET body = $2, expires_at = NULL, sweep_at = NULL, labels = NULL`,
    remove: `DELETE FROM ${t} WHERE name = $1 RETURNING 1`,
    /**
     * One page of live rows in name order after a cursor ($1, NULL for the first page), with
     * labels containing $2 (NULL: any), through the primary key and the labels index.
     */
    list: `SELECT n.now, r.name, r.body FROM (SELECT ${NOW} AS now) n
  LEFT JOIN LATERAL (SELECT name, body FROM ${t}
    WHERE ($1::text IS NULL OR name > $1::text) AND (expires_at IS NULL OR expires_at > n.now)
      AND ($2::jsonb IS NULL OR labels @> $2::jsonb)
    ORDER BY name LIMIT $3) r ON true`,
    /**
     * One batch of sweep: rows whose sweep time has passed by the server's clock, through the
     * sweep_at index, at most $1 of them; rows another transaction holds are skipped (a claim
     * taking them over), and the condition is checked again on the row as locked, so a record
     * renewed or re-claimed meanwhile stays.
     */
    sweep: `WITH n AS (SELECT ${NOW} AS now)
  DELETE FROM ${t} t USING n WHERE t.sweep_at <= n.now AND t.name IN (
    SELECT s.name FROM ${t} s, n WHERE s.sweep_at <= n.now ORDER BY s.sweep_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED)
  RETURNING n.now, t.body`,
  };
}

export type Statements = ReturnType<typeof statements>;
