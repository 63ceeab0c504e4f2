// lmdb: store URLs (`@idem/lmdb/url`), the handler @idem/core/url dispatches
// to. Light: parse and redact need no LMDB; `open` imports the adapter.
//   lmdb:///absolute/path, lmdb:/absolute/path or lmdb:relative/path (to cwd),
//   optional ?durability=flush|commit
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { IdempotencyStore, StoreOptions } from '@idem/core';
import { quoteUrlPart, storeUrlError, storeUrlQuery, type StoreUrlContext } from '@idem/core/url';

export interface LmdbUrlConfig {
  /** Absolute directory of the store. */
  path: string;
  durability?: 'flush' | 'commit';
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
  const params = storeUrlQuery(url, query, ['durability']);
  const durability = params.get('durability');
  if (durability !== null && durability !== 'flush' && durability !== 'commit') {
    throw storeUrlError(url, `durability must be flush or commit, got ${quoteUrlPart(durability, 20)}`);
  }
  return { path: resolve(context.cwd, path), ...(durability ? { durability } : {}) };
}

/** lmdb:///absolute/path: a local path holds no credential, so it is shown in full. */
export function redact(url: string, context: StoreUrlContext): string {
  const { path, durability } = parse(url, context);
  return `lmdb://${path}${durability ? `?durability=${durability}` : ''}`;
}

/** A read-only tool need not open (and so create) a directory that is not there. */
export function mayExist(config: LmdbUrlConfig): boolean {
  return existsSync(config.path);
}

export async function open(config: LmdbUrlConfig, options: StoreOptions = {}): Promise<IdempotencyStore> {
  const { createLmdbStore } = await import('./index.js');
  return createLmdbStore({ ...options, ...config });
}
