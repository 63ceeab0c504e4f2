// Where the postgres tests find a server: IDEM_TEST_POSTGRES_URL, as printed by
// scripts/servers/postgres.sh (Debian's PostgreSQL 15); else a testcontainers PostgreSQL where a
// container runtime exists; else a loud skip, and a failure under CI=true.
import { uniqueName } from '@idem/conformance/testing';
import { findServer, type ServerSpec } from '@idem/test-fixtures';

// A pinned image for people with Docker (not exercised here: these machines have none).
const POSTGRES_IMAGE = 'postgres:15';

export const POSTGRES: ServerSpec = {
  label: 'postgres',
  env: ['IDEM_TEST_POSTGRES_URL'],
  container: async () => {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const started = await new PostgreSqlContainer(POSTGRES_IMAGE).start();
    return { IDEM_TEST_POSTGRES_URL: started.getConnectionUri() };
  },
};

export const findPostgres = async () => (await findServer(POSTGRES))?.IDEM_TEST_POSTGRES_URL;

/** A table no other store of any test run shares: isolation on one server. */
export const freshTable = () => uniqueName('t').replaceAll('-', '_').toLowerCase();
