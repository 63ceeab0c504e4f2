// lmdb: store URLs (`@idem/lmdb/url`), the handler @idem/core/url dispatches
// to. Light: parse and redact need no LMDB; `open` imports the adapter.
//   lmdb:///absolute/path, lmdb:/absolute/path or lmdb:relative/path (to cwd),
//   optional ?durability=flush|commit&verify=true
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { quoteUrlPart, storeUrlError, storeUrlFlag, storeUrlQuery, type StoreUrlContext } from '@idem/core/url';

export interface LmdbUrlConfig {
  /** Absolute directory of the store. */
  path: string;
  durability?: 'flush' | 'commit';
  /** `verify=true`: read the whole tree (verifyLmdbStore) before opening; damage is CORRUPT_RECORD, never a crash. */
  verify?: boolean;
}

export const schemes = ['lmdb'] as const;

export function parse(url: string, context: StoreUrlContext): LmdbUrlConfig {
  const [rest = '', query = ''] = url.slice(url.indexOf(':') + 1).split(/\?(.*)/s, 2);
  let raw = rest;
  if (raw.startsWith('//')) {
    if (!raw.startsWith('///')) throw storeUrlError(url, 'an LMDB store is local: write lmdb:///absolute/path or lmdb:relative/path (no host)');
    raw = raw.slice(2);
  }
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch (error) {
    if (!(error instanceof URIError)) throw error;
    throw storeUrlError(url, 'bad percent-encoding in the path');
  }
  if (path === '' || path.includes('\0')) throw storeUrlError(url, 'the LMDB path is empty');
  const params = storeUrlQuery(url, query, ['durability', 'verify']);
  const durability = params.get('durability');
  if (durability !== null && durability !== 'flush' && durability !== 'commit') {
    throw storeUrlError(url, `durability must be flush or commit, got ${quoteUrlPart(durability, 20)}`);
  }
  const verify = storeUrlFlag(url, params, 'verify');
  return { path: resolve(context.cwd, path), ...(durability ? { durability } : {}), ...(verify !== undefined ? { verify } : {}) };
}

/** lmdb:///absolute/path: a local path holds no credential, so it is shown in full. */
export function redact(url: string, context: StoreUrlContext): string {
  const { path, durability, verify } = parse(url, context);
  const query = [durability ? `durability=${durability}` : '', verify !== undefined ? `verify=${verify}` : ''].filter(Boolean).join('&');
  return `lmdb://${path}${query ? `?${query}` : ''}`;
}

/** A read-only tool need not open (and so create) a directory that is not there. */
export function mayExist(config: LmdbUrlConfig): boolean {
  return existsSync(config.path);
}

export async function open(config: LmdbUrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { createLmdbStore, verifyLmdbStore } = await import('./index.js');
  const { verify, ...lmdb } = config;
  if (verify) await verifyLmdbStore(lmdb.path);
  return createLmdbStore({ ...options, ...lmdb });
}
