// Opens a store from JSON options: the conformance suite's worker processes use it.
import { Storage } from '@google-cloud/storage';
import { createGcsStore } from '@idem/gcs';
import { newStorage } from '@idem/gcs/url';

export default ({ endpoint, bucket, prefix, ...options }) => {
  const storage = newStorage(Storage, { apiEndpoint: endpoint, projectId: 'idem-test' });
  return createGcsStore({ ...options, bucket: storage.bucket(bucket), prefix });
};
