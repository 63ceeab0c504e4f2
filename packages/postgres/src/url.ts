// postgres: and postgresql: store URLs (`@idem/postgres/url`), the handler @idem/core/url
// dispatches to. Light: parsing loads no pg; `open` imports the adapter.
//   postgres://[user[:password]@]host[:port][/database][?schema=S][&table=T][&create_schema=true][&sslmode=M]
// schema and table name the store's table (identifiers, checked by the adapter); create_schema
// creates them at open if missing (the CLI's way to set up a table); sslmode goes to the connection. This is the one grammar: createPostgresStore({ url }) parses with it too.
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { parseServerUrl, quoteUrlPart, redactStoreUrl, storeUrlError, storeUrlFlag, storeUrlQuery } from '@idem/core/url';

export interface PostgresUrlConfig {
  /** The connection URL for pg (it may hold a password), without the store's own parameters. */
  url: string;
  schema?: string;
  table?: string;
  createSchema?: boolean;
}

export const schemes = ['postgres', 'postgresql'] as const;

/** Lower-case unquoted PostgreSQL identifiers only (schema, table): nothing to escape, nothing to fold, at most 63 bytes. */
export const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

export function parse(url: string): PostgresUrlConfig {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined || !(schemes as readonly string[]).includes(scheme)) throw storeUrlError(url, 'the scheme must be postgres:// or postgresql://');
  const u = parseServerUrl(url, 'postgres://[user:password@]host[:port]/database');
  const database = u.pathname.replace(/^\//, '');
  if (database.includes('/')) throw storeUrlError(url, `the path must be one database name, got ${quoteUrlPart(database, 40)}`);
  const params = storeUrlQuery(url, u.search.slice(1), ['schema', 'table', 'create_schema', 'sslmode']);
  const sslmode = params.get('sslmode');
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) throw storeUrlError(url, `sslmode must be one of ${SSL_MODES.join(', ')}`);
  const schema = params.get('schema');
  const table = params.get('table');
  for (const [name, value] of [
    ['schema', schema],
    ['table', table],
  ] as const) {
    if (value !== null && !IDENTIFIER.test(value))
      throw storeUrlError(url, `${name} must be a lower-case identifier (a-z, 0-9, _; not starting with a digit; at most 63)`);
  }
  const createSchema = storeUrlFlag(url, params, 'create_schema');
  u.search = sslmode !== null ? `?sslmode=${sslmode}` : '';
  return { url: u.href, ...(schema !== null ? { schema } : {}), ...(table !== null ? { table } : {}), ...(createSchema ? { createSchema } : {}) };
}

/** No userinfo, no secret parameter: core's conservative rule. */
export function redact(url: string): string {
  return redactStoreUrl(url);
}

export async function open(config: PostgresUrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { createPostgresStore } = await import('./index.js');
  return createPostgresStore({ ...options, ...config });
}
