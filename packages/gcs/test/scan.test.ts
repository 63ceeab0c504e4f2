import { expectFenceCeilingRefused, expectListNamesCorrupt } from '@idem/test-fixtures';
import { describe, it } from 'vitest';
import { createGcsStore } from '../src/index.js';
import { server, testStorage, uniquePrefix } from './server.js';

const storage = server ? testStorage(server.STORAGE_EMULATOR_HOST ?? '') : undefined;
const open = () => createGcsStore({ bucket: storage!.bucket(server!.IDEM_TEST_GCS_BUCKET ?? ''), prefix: uniquePrefix('scan') });

describe.skipIf(server === undefined)('@idem/gcs: list, sweep and fences through core', () => {
  it('one corrupt record hides no other in list', async () => expectListNamesCorrupt(await open()));
  it('a record at fence 2^53-1 refuses the next claim', async () => expectFenceCeilingRefused(await open()));
});
