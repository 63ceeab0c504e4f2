// The Fastify plugin on a real Fastify server: the shared story.
import { idempotency } from '@idem/http/fastify';
import Fastify from 'fastify';
import { Readable } from 'node:stream';
import { chunks, created, story } from './story.js';

story('fastify', async (options, state) => {
  const app = Fastify();
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  await app.register(idempotency({ ...options, identity: (request) => (request.headers['x-tenant'] as string | undefined) ?? 'anonymous' }));
  app.route({
    method: ['POST', 'PATCH', 'PUT'],
    url: '/*',
    handler: async (request, reply) => {
      state.runs++;
      const path = request.url.split('?')[0];
      if (path === '/binary') return reply.type('application/octet-stream').send(Buffer.from(request.body as Buffer).reverse());
      state.ran.push(JSON.stringify(request.body ?? null));
      if (state.hold) await state.hold;
      if (path === '/throw') throw new Error('handler failed');
      if (path === '/stream') return reply.type('text/plain').send(Readable.from(chunks(Number((request.query as { size: string }).size))));
      const status = (request.query as { status?: string }).status;
      if (status) return reply.code(Number(status)).send({ failed: true });
      const r = created(state, request.body);
      reply.code(r.status);
      for (const [name, value] of r.headers) reply.header(name, value);
      return reply.send(r.json);
    },
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => app.close() };
});
