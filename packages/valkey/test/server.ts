// Where the valkey tests find servers: IDEM_TEST_REDIS_URL (standalone) and
// IDEM_TEST_REDIS_CLUSTER (comma-separated host:port of cluster masters), as
// printed by scripts/servers/redis.sh (Valkey 8); else a testcontainers Valkey where a
// container runtime exists (standalone only); else a loud skip, and a failure under CI=true.
// IDEM_TEST_REDIS7_URL and IDEM_TEST_REDIS7_CLUSTER: Debian's Redis 7.0, for the conformance
// suite only (scripts/servers/redis7.sh).
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

export const REDIS7_STANDALONE: ServerSpec = { label: 'Redis 7.0 standalone', env: ['IDEM_TEST_REDIS7_URL'] };
export const REDIS7_CLUSTER: ServerSpec = { label: 'Redis 7.0 cluster', env: ['IDEM_TEST_REDIS7_CLUSTER'] };

export const findStandalone = async () => (await findServer(STANDALONE))?.IDEM_TEST_REDIS_URL;
export const findCluster = async () => (await findServer(CLUSTER))?.IDEM_TEST_REDIS_CLUSTER?.split(',');
export const findRedis7Standalone = async () => (await findServer(REDIS7_STANDALONE))?.IDEM_TEST_REDIS7_URL;
export const findRedis7Cluster = async () => (await findServer(REDIS7_CLUSTER))?.IDEM_TEST_REDIS7_CLUSTER?.split(',');

/** A prefix no other store of any test run shares: isolation on one server. */
export const freshPrefix = () => `idem-test:${uniqueName('valkey')}:`;
