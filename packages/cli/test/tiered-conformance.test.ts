// The tiered store (Valkey front, MinIO or fake-gcs-server archive) passes the shared suite.
// The front keeps finished records the suite's whole retention here, so the suite sees what any
// store must do; what the archive adds after the front forgets is proven in tiered.test.ts.
import { runConformance } from '@idem/conformance';
import { MAX_DURATION_MS } from '@idem/core';
import { freshSpec, gcs, minio, openTiered, redis } from './tiered-stores.js';

for (const kind of ['s3', 'gcs'] as const) {
  const enabled = redis !== undefined && (kind === 's3' ? minio : gcs) !== undefined;
  runConformance({
    name: `tiered (valkey + ${kind === 's3' ? 'MinIO' : 'fake-gcs-server'})`,
    enabled,
    // Front retention above any retention the suite uses: the front alone answers, as any store must.
    createStore: (options) => openTiered(freshSpec(kind, MAX_DURATION_MS), options),
    processes: { module: new URL('./open-tiered-store.ts', import.meta.url).href, options: () => ({ spec: freshSpec(kind, MAX_DURATION_MS) }) },
  });
}
