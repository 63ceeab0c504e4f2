import { expectListNamesCorrupt } from '@idem/test-fixtures';
import { describe, it } from 'vitest';
import { createValkeyStore } from '../src/index.js';
import { findStandalone, freshPrefix } from './server.js';

const url = await findStandalone();

describe.skipIf(url === undefined)('@idem/valkey: list', () => {
  it('one corrupt record hides no other in list', async () => {
    const store = await createValkeyStore({ url: url!, prefix: freshPrefix() });
    try {
      await expectListNamesCorrupt(store);
    } finally {
      await store.close();
    }
  });
});
