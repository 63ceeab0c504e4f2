import { runConformance } from '@idem/conformance';
import { createS3Store } from '../src/index.js';
import { findS3, freshPrefix, testClient } from './server.js';

const env = await findS3();
const client = env && testClient(env);

runConformance({
  name: 's3 (MinIO)',
  enabled: env !== undefined,
  createStore: (options) => createS3Store({ client: client!, bucket: env!.IDEM_TEST_S3_BUCKET, prefix: freshPrefix(), ...options }),
  processes: {
    module: new URL('./open-store.mjs', import.meta.url).href,
    options: () => ({ ...env!, prefix: freshPrefix() }),
  },
});
