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

/**
 * Lease durations refused (INVALID_ARGUMENT) on top of BAD_DURATIONS: a
 * lease is at least 100 ms (MIN_LEASE_MS), since a shorter one cannot be held.
 */
export const BAD_LEASES: ReadonlyArray<readonly [string, unknown]> = [
  ['1 ms', 1],
  ['99 ms', 99],
];

class Point {
  x = 1;
}
const circular: Record<string, unknown> = {};
circular.self = circular;

/**
 * Results refused with INVALID_ARGUMENT before any I/O: anything JSON
 * cannot store, or would give back as something else (a duplicate must get
 * exactly what the first run returned).
 */
export const BAD_RESULTS: ReadonlyArray<readonly [string, unknown]> = [
  ['BigInt', 1n],
  ['function', () => 1],
  ['symbol', Symbol('x')],
  ['NaN', Number.NaN],
  ['Infinity in an object', { a: Number.POSITIVE_INFINITY }],
  ['undefined, a function and a symbol in an array', [undefined, () => 1, Symbol('x')]],
  ['Map', new Map([['a', 1]])],
  ['Set', new Set([1])],
  ['an undefined property', { a: 1, b: undefined }],
  ['-0', -0],
  ['Date', new Date(0)],
  ['an integer beyond 2^53-1', 2 ** 53 + 2],
  ['class instance', new Point()],
  ['sparse array', Object.assign(new Array(3), { 0: 1, 2: 3 })],
  ['circular', circular],
  [
    'a getter that throws',
    {
      get broken(): never {
        throw new Error('getter');
      },
    },
  ],
  [
    'a nested getter that throws',
    [
      {
        get broken(): never {
          throw new Error('getter');
        },
      },
    ],
  ],
  [
    'a proxy whose traps throw',
    new Proxy(
      {},
      {
        ownKeys: () => {
          throw new Error('trap');
        },
      },
    ),
  ],
];
