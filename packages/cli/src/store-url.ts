// Store URLs for the CLI: the grammar of each scheme lives in its adapter's
// `@idem/<pkg>/url`, dispatched by @idem/core/url. The CLI adds only its
// default store and resolves adapters from its own install.
import { parseStoreUrl as parseUrl, type ParsedStoreUrl } from '@idem/core/url';

export const DEFAULT_STORE = 'lmdb:.idem';

/** A parsed store URL: `display` is safe to print; `mayExist()` lets read-only commands skip a store that is not there. */
export type StoreSpec = ParsedStoreUrl;

/** Parses a store URL; throws INVALID_STORE_URL (or ADAPTER_MISSING) before any I/O. `cwd` resolves relative LMDB paths. */
export function parseStoreUrl(text: string, cwd = process.cwd()): Promise<StoreSpec> {
  // Adapters are the CLI's optional peers: resolved from here first, then from @idem/core.
  return parseUrl(text, { cwd, importer: (specifier) => import(specifier) });
}
