// Tiered store URLs (docs/semantics.md §12): a front URL's `archive=` and
// `frontRetention=` parameters taken out of it, both URLs parsed (no I/O)
// before anything opens, and the tiered store (loaded lazily) over the two.
import { IdemError } from './errors.js';
import { quoteUrlPart, storeUrlError } from './redact.js';
import type { IdempotencyStore, StoreOptions } from './store.js';
import type { ParsedStoreUrl, StoreUrlOptions } from './url.js';
import { parseDuration } from './validate.js';

/** A front URL's `archive=` and `frontRetention=` parameters, taken out of it (docs/semantics.md §12). */
export interface ArchiveSplit {
  front: string;
  archive: string;
  frontRetention: string | undefined;
}

const TIER_PARAMS = new Set(['archive', 'frontRetention']);

/** Undefined for a URL without `archive=`; parameter names are matched as written (no decoding), as adapters read them. */
export function splitArchive(url: string): ArchiveSplit | undefined {
  // The query starts at the first "?" after the userinfo (a password may hold "?"); the fragment is left to the front's grammar.
  const q = url.indexOf('?', url.lastIndexOf('@') + 1);
  if (q < 0) return undefined;
  const hash = url.indexOf('#', q);
  const query = url.slice(q + 1, hash < 0 ? undefined : hash);
  const parts = query.split('&');
  const taken = parts.filter((part) => TIER_PARAMS.has(part.split('=')[0]!));
  if (!taken.some((part) => part.split('=')[0] === 'archive')) return undefined;
  const values: Record<string, string> = {};
  for (const part of taken) {
    const name = part.split('=')[0]!;
    if (name in values) throw storeUrlError(url, `parameter ${name} given twice`);
    // URLSearchParams decodes the value as the archive URL's author encoded it (encodeURIComponent).
    values[name] = new URLSearchParams(part).get(name) ?? '';
  }
  const rest = parts.filter((part) => !taken.includes(part));
  const front = url.slice(0, q) + (rest.length > 0 ? `?${rest.join('&')}` : '') + (hash < 0 ? '' : url.slice(hash));
  if (values.archive === '') throw storeUrlError(url, 'archive= needs the archive store URL, percent-encoded (encodeURIComponent)');
  return { front, archive: values.archive!, frontRetention: values.frontRetention };
}

/**
 * A front store URL with `archive=<encoded URL>`: both parsed (no I/O) before anything opens.
 * `parse` is url.ts's parseStoreUrl, passed in so that this module does not import url.ts back.
 */
export async function parseTieredUrl(
  url: string,
  tier: ArchiveSplit,
  options: StoreUrlOptions,
  parse: (url: string, options: StoreUrlOptions) => Promise<ParsedStoreUrl>,
): Promise<ParsedStoreUrl> {
  let frontRetentionMs: number | undefined;
  if (tier.frontRetention !== undefined) {
    try {
      frontRetentionMs = parseDuration('frontRetention', tier.frontRetention);
    } catch (error) {
      if (!(error instanceof IdemError)) throw error;
      throw storeUrlError(url, `frontRetention must look like 500ms, 30s, 5m, 2h or 30d, got ${quoteUrlPart(tier.frontRetention, 20)}`);
    }
  }
  if (splitArchive(tier.archive) !== undefined) throw storeUrlError(url, 'the archive URL cannot have an archive of its own');
  const front = await parse(tier.front, options);
  const archive = await parse(tier.archive, options);
  const join = front.display.includes('?') ? '&' : '?';
  // Each part redacted by its own adapter; the archive shown unencoded, for people (it is not meant to be parsed back).
  const display = `${front.display}${join}archive=${archive.display}${tier.frontRetention !== undefined ? `&frontRetention=${tier.frontRetention}` : ''}`;
  return Object.freeze({
    scheme: front.scheme,
    package: front.package,
    display,
    mayExist: () => front.mayExist() || archive.mayExist(),
    async open(storeOptions: StoreOptions & { readOnly?: boolean } = {}) {
      const { readOnly, ...tieredOptions } = storeOptions;
      const hint = readOnly ? { readOnly } : {};
      const [{ createTieredStore }, frontStore] = await Promise.all([import('./tiered.js'), front.open(hint)]);
      let archiveStore: IdempotencyStore;
      try {
        archiveStore = await archive.open(hint);
      } catch (error) {
        await frontStore.close();
        throw error;
      }
      try {
        return await createTieredStore({
          front: frontStore,
          archive: archiveStore,
          ...(frontRetentionMs !== undefined ? { frontRetentionMs } : {}),
          ...tieredOptions,
        });
      } catch (error) {
        await Promise.allSettled([frontStore.close(), archiveStore.close()]); // the tiered store never existed: nothing else would close them
        throw error;
      }
    },
  });
}
