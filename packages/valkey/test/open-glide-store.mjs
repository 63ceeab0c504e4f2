// Opens a store on a Valkey GLIDE client of its own (the conformance suite's worker processes use
// it); its close() closes that client too, which a store never does for a caller's client.
import { GlideClient, GlideClusterClient } from '@valkey/valkey-glide';
import { createValkeyStore } from '@idem/valkey';

export default async ({ addresses, cluster, ...options }) => {
  const config = { addresses, requestTimeout: 2000 };
  const client = cluster ? await GlideClusterClient.createClient(config) : await GlideClient.createClient(config);
  const store = await createValkeyStore({ client, ...options });
  const close = store.close.bind(store);
  store.close = async () => {
    await close();
    client.close();
  };
  return store;
};
