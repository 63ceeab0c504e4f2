import { expectFenceCeilingRefused, expectListNamesCorrupt, tempDir } from '@idem/test-fixtures';
import { afterAll, describe, it } from 'vitest';
import { createLmdbStore } from '../src/index.js';

describe('@idem/lmdb: list, sweep and fences through core', () => {
  const stores: Awaited<ReturnType<typeof createLmdbStore>>[] = [];
  const open = async () => {
    const store = await createLmdbStore({ path: tempDir() });
    stores.push(store);
    return store;
  };
  afterAll(() => Promise.all(stores.map((s) => s.close())));
  it('one corrupt record hides no other in list', async () => expectListNamesCorrupt(await open()));
  it('a record at fence 2^53-1 refuses the next claim', async () => expectFenceCeilingRefused(await open()));
});
