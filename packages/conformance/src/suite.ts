// The conformance suite: every rule of docs/semantics.md against a real store,
// one file per topic under tests/. Tests branch on the store's declared
// capabilities, never on its name.
import { afterAll, describe } from 'vitest';
import type { IdempotencyStore } from '@idem/core';
import { createSuite, type ConformanceOptions } from './context.js';
import { claimTests } from './tests/claims.js';
import { corruptTests } from './tests/corrupt.js';
import { eventTests } from './tests/events.js';
import { fencingTests } from './tests/fencing.js';
import { fingerprintTests } from './tests/fingerprints.js';
import { inputTests } from './tests/input.js';
import { interleavingTests } from './tests/interleavings.js';
import { keyTests } from './tests/keys.js';
import { listingTests } from './tests/listing.js';
import { modelTests } from './tests/model.js';
import { raceTests } from './tests/races.js';
import { recordTests } from './tests/records.js';
import { retentionTests } from './tests/retention.js';
import { runOnceTests } from './tests/run-once.js';
import { timeTests } from './tests/time.js';

export type { ConformanceOptions } from './context.js';

export function runConformance(opts: ConformanceOptions): void {
  const opened: IdempotencyStore[] = [];
  const suite = createSuite(opts, opened);
  describe.skipIf(opts.enabled === false)(`idem conformance: ${opts.name}`, () => {
    afterAll(async () => {
      await Promise.all(opened.map((s) => s.close()));
    });
    claimTests(suite);
    recordTests(suite);
    fingerprintTests(suite);
    fencingTests(suite);
    timeTests(suite);
    retentionTests(suite);
    listingTests(suite);
    keyTests(suite);
    inputTests(suite);
    corruptTests(suite);
    raceTests(suite);
    interleavingTests(suite);
    runOnceTests(suite);
    eventTests(suite);
    modelTests(suite);
  });
}
