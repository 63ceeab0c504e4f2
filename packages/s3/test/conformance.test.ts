import { runConformance } from '@idem/conformance';
import { createS3Store } from '../src/index.js';
import { findS3Servers, freshPrefix, testClient } from './server.js';

for (const { name, env, storeOptions } of await findS3Servers()) {
  const client = env && testClient(env);
  runConformance({
    name: `s3 (${name})`,
    enabled: env !== undefined,
    createStore: (options) => createS3Store({ client: client!, bucket: env!.IDEM_TEST_S3_BUCKET, prefix: freshPrefix(), ...storeOptions, ...options }),
    processes: {
      module: new URL('./open-store.mjs', import.meta.url).href,
      options: () => ({ ...env!, ...storeOptions, prefix: freshPrefix() }),
    },
  });
}
