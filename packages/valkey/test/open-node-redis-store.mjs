// Opens a store on a node-redis client of its own (the conformance suite's worker processes use
// it); its close() closes that client too, which a store never does for a caller's client.
import { createClient } from '@redis/client';
import { createValkeyStore } from '@idem/valkey';

export default async ({ url, ...options }) => {
  const client = await createClient({ url }).connect();
  const store = await createValkeyStore({ client, ...options });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    await client.close();
  };
  return store;
};
