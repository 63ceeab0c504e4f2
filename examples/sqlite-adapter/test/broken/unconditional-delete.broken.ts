// The example with one fault on purpose: sweep's delete ignores the record it
// read. Run by ../unconditional-delete.test.ts, where failing is the goal.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStore } from '@idem/core/adapter';
import { runConformance } from '@idem/conformance';
import { sqliteParts } from '../../src/index.ts';

runConformance({
  name: 'sqlite with an unconditional sweep delete',
  createStore: (options) =>
    createStore(options, () => {
      const parts = sqliteParts(join(mkdtempSync(join(tmpdir(), 'idem-sqlite-broken-')), 'idem.db'));
      return { ...parts, delete: (name) => parts.delete(name) };
    }),
  model: false,
});
