// The bench's server, in its own process: one trivial handler, bare at /bare and behind
// @idem/http at /guarded, on the store at argv[2]. Prints its port.
import { serve } from '@hono/node-server';
import { openStoreUrl } from '@idem/core/url';
import { idempotent } from '@idem/http';

const store = await openStoreUrl(process.argv[2], { importer: (s) => import(s) });
const handler = async (request) => Response.json({ ok: true, got: await request.json() }, { status: 201 });
const guarded = idempotent(handler, { store, identity: () => 'bench' });
serve({ fetch: (request) => (new URL(request.url).pathname === '/bare' ? handler(request) : guarded(request)), port: 0, hostname: '127.0.0.1' }, (info) =>
  process.stdout.write(`${info.port}\n`),
);
