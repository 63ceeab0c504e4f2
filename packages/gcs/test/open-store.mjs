// Opens a store from JSON options: the conformance suite's worker processes use it.
import { Storage } from '@google-cloud/storage';
import { createGcsStore } from '@idem/gcs';

export default ({ endpoint, bucket, prefix, ...options }) => {
  // See server.ts: the Node client misreads STORAGE_EMULATOR_HOST, so the URL is passed as apiEndpoint.
  delete process.env.STORAGE_EMULATOR_HOST;
  const storage = new Storage({ apiEndpoint: endpoint, projectId: 'idem-test' });
  return createGcsStore({ ...options, bucket: storage.bucket(bucket), prefix });
};
