// Opens a store from JSON options (the test server's env plus a prefix): the conformance suite's worker processes use it.
import { S3Client } from '@aws-sdk/client-s3';
import { createS3Store } from '@idem/s3';

export default (o) =>
  createS3Store({
    client: new S3Client({
      endpoint: o.IDEM_TEST_S3_ENDPOINT,
      region: o.IDEM_TEST_S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: o.IDEM_TEST_S3_ACCESS_KEY, secretAccessKey: o.IDEM_TEST_S3_SECRET_KEY },
    }),
    bucket: o.IDEM_TEST_S3_BUCKET,
    prefix: o.prefix,
    ...(o.unconditionalSweep ? { unconditionalSweep: true } : {}),
  });
