// @idem/valkey on a Valkey GLIDE client the app installed itself: one claim, a duplicate, a complete.
import { GlideClient } from '@valkey/valkey-glide';
import { createValkeyStore } from '@idem/valkey';

const { hostname: host, port } = new URL(process.env.IDEM_TEST_REDIS_URL);
const client = await GlideClient.createClient({ addresses: [{ host, port: Number(port) }], requestTimeout: 2000 });
try {
  const store = await createValkeyStore({ client, prefix: `outside-view:${process.pid}:${Date.now()}:` });
  const claim = await store.claim('outside');
  if (claim.outcome !== 'acquired') throw new Error(`claim: ${claim.outcome}`);
  if ((await store.claim('outside')).outcome !== 'in_flight') throw new Error('duplicate: not in_flight');
  const done = await store.complete(claim.lease, { result: { ok: true } });
  if (done.status !== 'succeeded') throw new Error(`complete: ${done.status}`);
  await store.delete('outside');
  await store.close();
  console.log('claim, duplicate, complete on Valkey GLIDE: ok');
} finally {
  client.close();
}
