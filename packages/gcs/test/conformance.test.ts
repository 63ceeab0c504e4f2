import { runConformance } from '@idem/conformance';
import { createGcsStore } from '../src/index.js';
import { server, testStorage, uniquePrefix } from './server.js';

const endpoint = server?.STORAGE_EMULATOR_HOST ?? '';
const bucketName = server?.IDEM_TEST_GCS_BUCKET ?? '';
const storage = server ? testStorage(endpoint) : undefined;

runConformance({
  name: 'gcs (fake-gcs-server)',
  enabled: server !== undefined,
  // One bucket for all; a fresh prefix per store keeps them apart.
  createStore: (options) => createGcsStore({ ...options, bucket: storage!.bucket(bucketName), prefix: uniquePrefix('conf') }),
  processes: {
    module: new URL('./open-store.mjs', import.meta.url).href,
    options: () => ({ endpoint, bucket: bucketName, prefix: uniquePrefix('procs') }),
  },
});
