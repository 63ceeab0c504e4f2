// Real HTTP servers on loopback for the tests, and the client side (fetch).
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';

export interface Running {
  url: string;
  close(): Promise<void>;
}

/** A fetch handler served by @hono/node-server (Node's http server) on a free loopback port. */
export function serveFetch(fetch: (request: Request) => Response | Promise<Response>): Promise<Running> {
  return new Promise((resolve) => {
    const server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) =>
      resolve({
        url: `http://127.0.0.1:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            (server as unknown as { closeAllConnections(): void }).closeAllConnections();
            server.close(() => done());
          }),
      }),
    );
  });
}

/** A request's answer, whole: status, the headers asserted on, the body as text. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: () => Record<string, unknown>;
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}, method = 'POST'): Promise<Answer> {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? (body as string) : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
}

/** A promise and its resolver: a gate a handler waits on. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
