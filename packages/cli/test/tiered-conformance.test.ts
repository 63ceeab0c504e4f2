// The tiered store (Valkey front, MinIO, fake-gcs-server or PostgreSQL archive) passes the shared suite.
// The front keeps finished records the suite's whole retention here, so the suite sees what any
// store must do; what the archive adds after the front forgets is proven in tiered.test.ts.
import { runConformance } from '@idem/conformance';
import { MAX_DURATION_MS } from '@idem/core';
import { archiveLabel, freshSpec, openTiered, tieredServers } from './tiered-stores.js';

for (const kind of ['s3', 'gcs', 'postgres'] as const) {
  runConformance({
    name: `tiered (valkey + ${archiveLabel(kind)})`,
    enabled: tieredServers(kind),
    // Front retention above any retention the suite uses: the front alone answers, as any store must.
    createStore: (options) => openTiered(freshSpec(kind, MAX_DURATION_MS), options),
    processes: { module: new URL('./open-tiered-store.ts', import.meta.url).href, options: () => ({ spec: freshSpec(kind, MAX_DURATION_MS) }) },
  });
}
