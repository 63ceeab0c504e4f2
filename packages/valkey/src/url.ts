// redis:, rediss:, valkey:, valkeys: store URLs (`@idem/valkey/url`), the
// handler @idem/core/url dispatches to. Light: parsing loads no ioredis;
// `open` imports the adapter.
//   redis://[user:password@]host[:port][/db][?prefix=P]
//   redis://[user:password@]seed:port?cluster=true[&nodes=host:port,host:port][&prefix=P]
//   redis+sentinel://[user:password@]host[:port],host[:port]/masterName[/db][?sentinelPassword=…][&prefix=P] (sentinel.ts)
// rediss:// and valkeys:// use TLS. A cluster has only database 0. Every form takes
// minReplicas=, replicaTimeoutMs= and fsync= (claims and finishes wait for replica acknowledgement, and the disks).
// This is the one grammar: createValkeyStore({ url }) parses with it too, so one string is one store.
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { isSentinelUrl, parseSentinelUrl, prefixParam, replicaParams, type SentinelTarget } from './sentinel.js';
import { parseServerUrl, quoteUrlPart, redactStoreUrl, storeUrlError, storeUrlFlag, storeUrlQuery } from '@idem/core/url';

export interface ValkeyUrlConfig {
  /** The URL as given (it may hold a password): `open` hands it to `createValkeyStore({ url })`. */
  url: string;
  /** The server (or first cluster seed) as one URL without query, for ioredis. */
  server: string;
  /** Database index from the path; 0 when absent. */
  db: number;
  /** With cluster=true: every seed, `server` first (what `createValkeyStore({ cluster })` takes). */
  cluster?: string[];
  /** A Sentinel URL's sentinels, master name and auth. */
  sentinel?: SentinelTarget;
  prefix?: string;
  minReplicas?: number;
  replicaTimeoutMs?: number;
  fsync?: boolean;
}

export const schemes = ['redis', 'rediss', 'valkey', 'valkeys', 'redis+sentinel', 'valkey+sentinel'] as const;

/** Redis accepts database indexes up to its `databases` setting, an int; the server checks the rest. */
const MAX_DB = 2 ** 31 - 1;

export function parse(url: string): ValkeyUrlConfig {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined || !(schemes as readonly string[]).includes(scheme)) {
    throw storeUrlError(url, `the scheme must be one of ${schemes.map((s) => `${s}://`).join(', ')}`);
  }
  if (isSentinelUrl(url)) {
    const sentinel = parseSentinelUrl(url);
    const { db, prefix, minReplicas, replicaTimeoutMs, fsync } = sentinel;
    return {
      url,
      server: url,
      db,
      sentinel,
      ...(prefix !== undefined ? { prefix } : {}),
      ...(minReplicas !== undefined ? { minReplicas } : {}),
      ...(replicaTimeoutMs !== undefined ? { replicaTimeoutMs } : {}),
      ...(fsync !== undefined ? { fsync } : {}),
    };
  }
  const u = parseServerUrl(url, 'redis://[user:password@]host[:port][/db]');
  const path = u.pathname.replace(/^\//, '');
  if (path !== '' && !/^(0|[1-9]\d{0,9})$/.test(path)) {
    throw storeUrlError(url, `the path must be a database index (0, 1, 2...), got ${quoteUrlPart(path, 20)}`);
  }
  const db = path === '' ? 0 : Number(path);
  if (db > MAX_DB) throw storeUrlError(url, `database index ${db} is beyond any server's range (at most ${MAX_DB})`);
  const params = storeUrlQuery(url, u.search.slice(1), ['prefix', 'cluster', 'nodes', 'minReplicas', 'replicaTimeoutMs', 'fsync']);
  const replicas = replicaParams(params, (why) => storeUrlError(url, why));
  const cluster = storeUrlFlag(url, params, 'cluster') ?? false;
  if (cluster && db !== 0) throw storeUrlError(url, 'a cluster has only database 0');
  const nodes = (params.get('nodes') ?? '').split(',').filter(Boolean);
  for (const node of nodes) {
    const m = /^([^:@/\s]+):(\d{1,5})$/.exec(node);
    if (!m || Number(m[2]) > 65535) {
      throw storeUrlError(url, `nodes must be host:port,host:port (credentials go once, in the URL before the host), got ${quoteUrlPart(node, 60)}`);
    }
  }
  if (nodes.length > 0 && !cluster) throw storeUrlError(url, 'nodes= needs cluster=true');
  const prefix = prefixParam(params, (why) => storeUrlError(url, why));
  u.search = '';
  const server = u.href;
  return { url, server, db, ...(cluster ? { cluster: [server, ...nodes] } : {}), ...(prefix !== undefined ? { prefix } : {}), ...replicas };
}

/** No userinfo, no secret parameter: core's conservative rule. */
export function redact(url: string): string {
  return redactStoreUrl(url);
}

export async function open(config: ValkeyUrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { createValkeyStore } = await import('./index.js');
  // The same entry as a library caller's: the URL is read again by this module's parse, not re-encoded.
  return createValkeyStore({ ...options, url: config.url });
}
