// The Express middleware on a real Express server: the shared story.
import type { AddressInfo } from 'node:net';
import { idempotency } from '@idem/http/express';
import express from 'express';
import { chunks, created, story } from './story.js';

story('express', async (options, state) => {
  const app = express();
  app.use(express.json(), express.raw({ type: 'application/octet-stream' }));
  app.use(idempotency({ ...options, identity: (req) => req.get('x-tenant') ?? 'anonymous' }));
  app.all('/{*path}', async (req, res) => {
    state.runs++;
    if (req.path === '/binary') {
      res.type('application/octet-stream').send(Buffer.from(req.body as Buffer).reverse());
      return;
    }
    state.ran.push(JSON.stringify(req.body ?? null));
    if (state.hold) await state.hold;
    if (req.path === '/throw') throw new Error('handler failed');
    if (req.path === '/stream') {
      res.type('text/plain');
      for (const part of chunks(Number(req.query.size))) res.write(part);
      res.end();
      return;
    }
    if (req.query.status) {
      res.status(Number(req.query.status)).json({ failed: true });
      return;
    }
    const r = created(state, req.body);
    res.status(r.status);
    for (const [name, value] of r.headers) res.append(name, value);
    res.send(r.json);
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
});
