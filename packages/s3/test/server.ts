// Where the s3 tests find MinIO: the env written by scripts/servers/minio.sh,
// else a testcontainers MinIO where Docker is available, else a loud skip (a failure under CI=true).
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { uniqueName } from '@idem/conformance/testing';
import { findServer, type ServerSpec } from '@idem/test-fixtures';

export type S3Env = Record<'IDEM_TEST_S3_ENDPOINT' | 'IDEM_TEST_S3_ACCESS_KEY' | 'IDEM_TEST_S3_SECRET_KEY' | 'IDEM_TEST_S3_BUCKET' | 'IDEM_TEST_S3_REGION', string>;

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
