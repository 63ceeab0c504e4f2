// Where the valkey tests find servers: IDEM_TEST_REDIS_URL (standalone) and
// IDEM_TEST_REDIS_CLUSTER (comma-separated host:port of cluster masters), as
// printed by scripts/servers/redis.sh; else a testcontainers Valkey where a
// container runtime exists (standalone only); else a loud skip, and a failure under CI=true.
import { uniqueName } from '@idem/conformance/testing';
import { findServer, type ServerSpec } from '@idem/test-fixtures';

// A pinned Valkey image for people with Docker (not exercised here: these machines have none).
const VALKEY_IMAGE = 'valkey/valkey:8.1';

export const STANDALONE: ServerSpec = {
  label: 'valkey standalone',
  env: ['IDEM_TEST_REDIS_URL'],
  container: async () => {
    const { ValkeyContainer } = await import('@testcontainers/valkey');
    const started = await new ValkeyContainer(VALKEY_IMAGE).start();
    return { IDEM_TEST_REDIS_URL: started.getConnectionUrl() };
  },
};

export const CLUSTER: ServerSpec = { label: 'valkey cluster', env: ['IDEM_TEST_REDIS_CLUSTER'] };

export const findStandalone = async () => (await findServer(STANDALONE))?.IDEM_TEST_REDIS_URL;
export const findCluster = async () => (await findServer(CLUSTER))?.IDEM_TEST_REDIS_CLUSTER?.split(',');

/** A prefix no other store of any test run shares: isolation on one server. */
export const freshPrefix = () => `idem-test:${uniqueName('valkey')}:`;
