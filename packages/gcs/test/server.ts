// Locates the GCS test server and builds clients for it.
import { Storage, type StorageOptions } from '@google-cloud/storage';
import { findServer } from '@idem/test-fixtures';
import { newStorage } from '../src/url.js';

export const BUCKET = 'idem-test';
/** Same release scripts/servers/gcs.sh builds; see there why this one. */
const IMAGE = 'fsouza/fake-gcs-server:1.56.1';

/** STORAGE_EMULATOR_HOST (http://127.0.0.1:port) and IDEM_TEST_GCS_BUCKET, or undefined (loud skip; throws under CI=true). */
export const server = await findServer({
  label: 'GCS suite (fake-gcs-server)',
  env: ['STORAGE_EMULATOR_HOST', 'IDEM_TEST_GCS_BUCKET'],
  container: async () => {
    const { CloudStorageEmulatorContainer } = await import('@testcontainers/gcloud');
    // The image's default backend is the filesystem; tests want the in-memory one.
    const started = await new CloudStorageEmulatorContainer(IMAGE).withCommand(['-backend', 'memory']).start();
    const endpoint = started.getEmulatorEndpoint();
    const made = await fetch(`${endpoint}/storage/v1/b?project=idem-test`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: BUCKET }),
    });
    if (!made.ok) throw new Error(`cannot create bucket ${BUCKET}: HTTP ${made.status}`);
    return { STORAGE_EMULATOR_HOST: endpoint, IDEM_TEST_GCS_BUCKET: BUCKET };
  },
});

/** A client for the emulator at `apiEndpoint` (the emulator workaround is the adapter's newStorage). */
export function testStorage(apiEndpoint: string, options: StorageOptions = {}): Storage {
  return newStorage(Storage, { apiEndpoint, projectId: 'idem-test', ...options });
}

/** A prefix no other store uses: isolates stores sharing the bucket. */
export function uniquePrefix(label = 'test'): string {
  return `idem-${label}/${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}/`;
}
