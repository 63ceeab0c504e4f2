export { runConformance, type ConformanceOptions } from './suite.js';
export { TestClock } from './clock.js';
export { BAD_DURATIONS, BAD_KEYS, BAD_RESULTS, GOOD_KEYS } from './bad-input.js';
export { LOOKALIKE_KEYS } from './tests/keys.js';
export { codeOf, expectCode, expectIdemError, expectLease, sleep, uniqueName } from './testing.js';
