// The shared bad-input corpus: every adapter must reject these with a typed
// error before any I/O. Kept here (published with the suite) so other
// adapters' authors get the same corpus.

/** Values that are not valid keys, with why. */
export const BAD_KEYS: ReadonlyArray<readonly [string, unknown]> = [
  ['empty string', ''],
  ['1025 ASCII bytes', 'k'.repeat(1025)],
  ['1026 UTF-8 bytes in 513 characters', 'é'.repeat(513)],
  ['lone high surrogate', 'a\uD800b'],
  ['lone low surrogate', '\uDC00'],
  ['number', 42],
  ['null', null],
  ['undefined', undefined],
  ['object', { key: 'k' }],
  ['array', ['k']],
  ['boolean', true],
];

/** Keys at the edges that must be accepted and stored verbatim. */
export const GOOD_KEYS: ReadonlyArray<readonly [string, string]> = [
  ['one byte', 'k'],
  ['1024 ASCII bytes', 'k'.repeat(1024)],
  ['1024 UTF-8 bytes', 'é'.repeat(512)],
  ['path-like', '../../etc/passwd'],
  ['slashes and spaces', 'jobs/2026-11-22/ import #1'],
  ['NUL and control characters', 'a\u0000b\u0007c\n'],
  ['emoji (surrogate pairs)', '🦄🚀'],
  ['S3/GCS-hostile', '?#%*[]{}~'],
];

/** Values that are not valid durations in milliseconds. */
export const BAD_DURATIONS: ReadonlyArray<readonly [string, unknown]> = [
  ['zero', 0],
  ['negative', -1],
  ['fraction', 1.5],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['string', '1000'],
  ['beyond ten years', 11 * 365 * 24 * 3600 * 1000],
  ['unsafe integer', 2 ** 53],
];

/** Results that cannot be stored as JSON. */
export const BAD_RESULTS: ReadonlyArray<readonly [string, unknown]> = [
  ['BigInt', 1n],
  ['function', () => 1],
  ['symbol', Symbol('x')],
];
