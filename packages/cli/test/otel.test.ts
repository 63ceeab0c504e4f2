// idem run --otel end to end: the real OTLP/HTTP exporter sends the run's spans to a receiver in
// this test (it decodes the JSON the exporter posts), the run continues the TRACEPARENT it is
// given, and the command gets the run span's context as its own TRACEPARENT.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '@idem/test-fixtures';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshKey, freshStore, idem, lines } from './helpers.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: { stringValue?: string; intValue?: number | string } }[];
}
const received: { service: string | undefined; span: OtlpSpan }[] = [];
const server = createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8').on('data', (d: string) => (body += d));
  req.on('end', () => {
    if (req.url === '/v1/traces') {
      for (const rs of JSON.parse(body).resourceSpans) {
        const service = rs.resource.attributes.find((a: OtlpSpan['attributes'][number]) => a.key === 'service.name')?.value.stringValue;
        for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ service, span });
      }
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
let endpoint = '';
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const attr = (span: OtlpSpan, key: string) => {
  const v = span.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue === undefined ? undefined : Number(v.intValue));
};
const TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER = 'b7ad6b7169203331';

describe('idem run --otel', () => {
  it('exports idem.run over OTLP under the TRACEPARENT given, and hands the command the run span as its TRACEPARENT; IDEM_OTEL=1 does the same', async () => {
    const store = freshStore();
    const key = freshKey('otel');
    const file = join(tempDir('idem-cli-otel-'), 'traceparent');
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, TRACEPARENT: `00-${TRACE}-${CALLER}-01` };
    const first = await idem(['run', '--otel', '--key', key, '--store', store, '--', 'sh', '-c', 'echo "$TRACEPARENT" >> "$1"', 'sh', file], { env });
    expect(first.code).toBe(0);
    const again = await idem(['run', '--key', key, '--store', store, '--', 'true'], { env: { ...env, IDEM_OTEL: '1' } });
    expect(again.code).toBe(0);
    // Both processes shut their exporter down before exiting: every span has arrived.
    const runs = received.filter((r) => r.span.name === 'idem.run' && attr(r.span, 'idem.key') === key).map((r) => r.span);
    expect(runs.map((s) => attr(s, 'idem.outcome'))).toEqual(['acquired', 'completed']);
    for (const run of runs) expect(run).toMatchObject({ traceId: TRACE, parentSpanId: CALLER });
    const [run] = runs;
    const children = received.filter((r) => r.span.parentSpanId === run!.spanId).map((r) => `${r.span.name}:${attr(r.span, 'idem.operation')}`);
    expect(children.sort()).toEqual(['idem.claim:claim', 'idem.finish:complete']);
    expect(attr(run!, 'idem.store.kind')).toBe('lmdb');
    expect(received.every((r) => r.service === 'idem')).toBe(true);
    expect(lines(file)).toEqual([`00-${TRACE}-${run!.spanId}-01`]);
  });

  it('IDEM_OTEL with a value that is neither on nor off is a usage error, before any I/O', async () => {
    const r = await idem(['run', '--key', 'k', '--store', freshStore(), '--', 'true'], { env: { IDEM_OTEL: 'maybe' } });
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('IDEM_OTEL');
  });
});
