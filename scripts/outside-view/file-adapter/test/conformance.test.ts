import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from '@idem/conformance';
import { createFileStore } from '../src/index.ts';

const freshDir = () => mkdtempSync(join(tmpdir(), 'idem-file-store-'));

runConformance({
  name: 'file (outside adapter)',
  createStore: (options) => createFileStore({ dir: freshDir(), ...options }),
  processes: { module: new URL('./open-store.ts', import.meta.url).href, options: () => ({ dir: freshDir() }) },
});
