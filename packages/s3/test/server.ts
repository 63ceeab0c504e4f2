// Where the s3 tests find MinIO: the env written by scripts/servers/minio.sh,
// else a testcontainers MinIO where Docker is available, else a loud skip (a failure under CI=true).
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { uniqueName } from '@idem/conformance/testing';
import { findServer, type ServerSpec } from '@idem/test-fixtures';

export type S3Env = Record<
  'IDEM_TEST_S3_ENDPOINT' | 'IDEM_TEST_S3_ACCESS_KEY' | 'IDEM_TEST_S3_SECRET_KEY' | 'IDEM_TEST_S3_BUCKET' | 'IDEM_TEST_S3_REGION',
  string
>;

// An image from before MinIO stopped publishing them, with atomic conditional PUT
// and 404 for If-Match on a missing key (not checked here: these machines have no Docker).
const MINIO_IMAGE = 'minio/minio:RELEASE.2025-09-07T16-13-09Z';

export const S3_SERVER: ServerSpec = {
  label: 's3 (MinIO)',
  env: ['IDEM_TEST_S3_ENDPOINT', 'IDEM_TEST_S3_ACCESS_KEY', 'IDEM_TEST_S3_SECRET_KEY', 'IDEM_TEST_S3_BUCKET', 'IDEM_TEST_S3_REGION'],
  container: async () => {
    const { MinioContainer } = await import('@testcontainers/minio');
    const started = await new MinioContainer(MINIO_IMAGE).withUsername('idemtest').withPassword('idemtest-secret-key-0123').start();
    const env: S3Env = {
      IDEM_TEST_S3_ENDPOINT: started.getConnectionUrl(),
      IDEM_TEST_S3_ACCESS_KEY: started.getUsername(),
      IDEM_TEST_S3_SECRET_KEY: started.getPassword(),
      IDEM_TEST_S3_BUCKET: 'idem-test',
      IDEM_TEST_S3_REGION: 'us-east-1',
    };
    await testClient(env).send(new CreateBucketCommand({ Bucket: env.IDEM_TEST_S3_BUCKET }));
    return env;
  },
};

export const findS3 = async () => (await findServer(S3_SERVER)) as S3Env | undefined;

const VERSITYGW_VARS = ['ENDPOINT', 'ACCESS_KEY', 'SECRET_KEY', 'BUCKET', 'REGION'] as const;

/** Each S3 implementation the suites run on, with what its probe must measure. */
export interface S3Server {
  name: string;
  /** Undefined outside CI when the server is not running (a loud skip). */
  env: S3Env | undefined;
  /** Measured: DELETE If-Match with a stale ETag leaves the object. */
  deleteIfMatch: boolean;
  /** What a store on this server needs for the whole suite to run (sweep on MinIO). */
  storeOptions: { unconditionalSweep?: boolean };
}

/** MinIO (scripts/servers/minio.sh) and versitygw (scripts/servers/versitygw.sh); under CI=true both must be there. */
export async function findS3Servers(): Promise<S3Server[]> {
  const versity = await findServer({ label: 's3 (versitygw)', env: VERSITYGW_VARS.map((v) => `IDEM_TEST_VERSITYGW_${v}`) });
  return [
    { name: 'MinIO', env: await findS3(), deleteIfMatch: false, storeOptions: { unconditionalSweep: true } },
    {
      name: 'versitygw',
      env: versity && (Object.fromEntries(VERSITYGW_VARS.map((v) => [`IDEM_TEST_S3_${v}`, versity[`IDEM_TEST_VERSITYGW_${v}`]])) as S3Env),
      deleteIfMatch: true,
      // Its DELETE If-Match refuses a stale ETag, but not atomically against a concurrent PUT: in
      // one CI run a sweep racing a takeover deleted the new owner's record. So, as on MinIO, sweep
      // runs only by opt-in, and the store then declares conditionalSweep: false.
      storeOptions: { unconditionalSweep: true },
    },
  ];
}

export function testClient(env: S3Env, config: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    endpoint: env.IDEM_TEST_S3_ENDPOINT,
    region: env.IDEM_TEST_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.IDEM_TEST_S3_ACCESS_KEY, secretAccessKey: env.IDEM_TEST_S3_SECRET_KEY },
    ...config,
  });
}

/** A prefix no other store of any test run shares: isolation without a bucket per store. */
export const freshPrefix = () => `test/${uniqueName('s3')}/`;
