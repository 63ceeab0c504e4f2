// postgres: and postgresql: store URLs (`@idem/postgres/url`), the handler @idem/core/url
// dispatches to. Light: parsing loads no pg; `open` imports the adapter.
//   postgres://[user[:password]@]host[:port][/database][?schema=S][&table=T][&create_schema=true][&sslmode=M]
// schema and table name the store's table (identifiers, checked by the adapter); create_schema
// creates them at open if missing (the CLI's way to set up a table); sslmode goes to the connection. This is the one grammar: createPostgresStore({ url }) parses with it too.
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { quoteUrlPart, redactStoreUrl, storeUrlError, storeUrlFlag, storeUrlQuery } from '@idem/core/url';

export interface PostgresUrlConfig {
  /** The connection URL for pg (it may hold a password), without the store's own parameters. */
  url: string;
  schema?: string;
  table?: string;
  createSchema?: boolean;
}

export const schemes = ['postgres', 'postgresql'] as const;

const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];

export function parse(url: string): PostgresUrlConfig {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined || !(schemes as readonly string[]).includes(scheme)) throw storeUrlError(url, 'the scheme must be postgres:// or postgresql://');
  let u: URL;
  try {
    u = new URL(url);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    // The TypeError quotes the URL whole (its `input`): not kept as the cause.
    throw storeUrlError(url, 'not a valid URL; write postgres://[user:password@]host[:port]/database (percent-encode "@", "/", ":" in a password)');
  }
  if (!url.slice(u.protocol.length).startsWith('//')) throw storeUrlError(url, 'write postgres://host:port/database (with "//")');
  if (u.hostname === '') throw storeUrlError(url, 'a host is required, e.g. postgres://127.0.0.1:5432/mydb');
  try {
    decodeURIComponent(u.username);
    decodeURIComponent(u.password);
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
    throw storeUrlError(url, 'bad percent-encoding in the user name or password (write "%" as %25)');
  }
  if (u.hash !== '') throw storeUrlError(url, 'a #fragment has no meaning here (percent-encode "#" in a password as %23)');
  const database = u.pathname.replace(/^\//, '');
  if (database.includes('/')) throw storeUrlError(url, `the path must be one database name, got ${quoteUrlPart(database, 40)}`);
  const params = storeUrlQuery(url, u.search.slice(1), ['schema', 'table', 'create_schema', 'sslmode']);
  const sslmode = params.get('sslmode');
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) throw storeUrlError(url, `sslmode must be one of ${SSL_MODES.join(', ')}`);
  const schema = params.get('schema');
  const table = params.get('table');
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
