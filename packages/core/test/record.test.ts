// The one record layout: serializeRecord writes RECORD_LAYOUT's order whatever order the object
// has, and bytes an earlier release wrote in another order still parse to the same record.
import { describe, expect, it } from 'vitest';
import { parseRecord, RECORD_LAYOUT, serializeRecord, type IdemRecord } from '../src/adapter.js';

const record: IdemRecord = {
  v: 1,
  key: 'a/b "é"',
  status: 'succeeded',
  runId: 'r1',
  fence: 3,
  attempt: 2,
  fingerprint: 'sha256:x',
  claimedAt: 10,
  completedAt: 20,
  expiresAt: 30,
  result: { list: [], n: 1.5 },
};

describe('record layout', () => {
  it('writes the layout order, whatever order the object has', () => {
    const reversed = Object.fromEntries(Object.entries(record).reverse()) as unknown as IdemRecord;
    const bytes = serializeRecord(reversed);
    expect(bytes).toBe(serializeRecord(record));
    expect(Object.keys(JSON.parse(bytes))).toEqual(RECORD_LAYOUT.map(([name]) => name).filter((name) => name in record));
    expect(bytes).toBe(
      '{"v":1,"key":"a/b \\"é\\"","status":"succeeded","runId":"r1","fence":3,"attempt":2,"fingerprint":"sha256:x","claimedAt":10,"completedAt":20,"expiresAt":30,"result":{"list":[],"n":1.5}}',
    );
  });

  it('reads bytes of the earlier order (fingerprint after the lease) as the same record', () => {
    const earlier = '{"v":1,"key":"k","status":"in_flight","runId":"r","fence":1,"attempt":1,"claimedAt":5,"leaseExpiresAt":9,"fingerprint":"f"}';
    const parsed = parseRecord('name', earlier);
    expect(parsed).toEqual({ v: 1, key: 'k', status: 'in_flight', runId: 'r', fence: 1, attempt: 1, claimedAt: 5, leaseExpiresAt: 9, fingerprint: 'f' });
    expect(serializeRecord(parsed)).toBe(
      '{"v":1,"key":"k","status":"in_flight","runId":"r","fence":1,"attempt":1,"fingerprint":"f","claimedAt":5,"leaseExpiresAt":9}',
    );
  });
});
