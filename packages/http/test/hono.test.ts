// The fetch-standard entry behind Hono on Node (@hono/node-server): the shared story.
import { idempotent } from '@idem/http';
import { Hono } from 'hono';
import { serveFetch } from './servers.js';
import { chunks, created, story } from './story.js';

story('hono', async (options, state) => {
  const handler = async (request: Request) => {
    state.runs++;
    const url = new URL(request.url);
    if (url.pathname === '/binary') {
      const bytes = new Uint8Array(await request.arrayBuffer());
      return new Response(bytes.reverse(), { status: 200, headers: { 'content-type': 'application/octet-stream' } });
    }
    const body = await request.json().catch(() => null);
    state.ran.push(JSON.stringify(body));
    if (state.hold) await state.hold;
    if (url.pathname === '/throw') throw new Error('handler failed');
    if (url.pathname === '/stream') {
      const parts = chunks(Number(url.searchParams.get('size')));
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const next = parts.shift();
          if (next) controller.enqueue(next);
          else controller.close();
        },
      });
      return new Response(stream, { status: 200, headers: { 'content-type': 'text/plain' } });
    }
    if (url.searchParams.get('status')) return new Response(JSON.stringify({ failed: true }), { status: Number(url.searchParams.get('status')) });
    const r = created(state, body);
    return new Response(r.json, { status: r.status, headers: r.headers });
  };
  const guarded = idempotent(handler, { ...options, identity: (r) => r.headers.get('x-tenant') ?? 'anonymous' });
  const app = new Hono();
  app.on(['POST', 'PATCH', 'PUT'], '/*', (c) => guarded(c.req.raw));
  return serveFetch(app.fetch);
});
