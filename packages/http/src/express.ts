// Express middleware over the one core: holds the response back (write/end are buffered) until the
// fenced finish has stored it, so a request that lost its lease answers a problem instead.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { HttpIdempotency, type CapturedResponse, type IdempotencyOptions, type Run } from './core.js';

export interface ExpressIdempotencyOptions extends IdempotencyOptions {
  /** Who the caller is (tenant, user, API key id), from your auth: keys are scoped by it. */
  identity: (req: Request) => string | Promise<string>;
  /** The route a key is scoped to. Default the path (`req.baseUrl + req.path`). */
  route?: (req: Request) => string;
}

/**
 * Handlers find their claim in `res.locals.idempotency`: `{ signal, fence }` (see the fetch entry's
 * HandlerContext). Mount after your body parser (`express.json()`): the fingerprint reads `req.body`. Without one,
 * the raw body is read (up to `maxRequestBytes`) and left in `req.body` as a Buffer.
 */
export function idempotency(options: ExpressIdempotencyOptions): RequestHandler {
  const core = new HttpIdempotency(options);
  if (typeof options.identity !== 'function') throw new TypeError('identity must be a function of the request');
  const route = options.route ?? ((req: Request) => req.baseUrl + req.path);
  return (req, res, next) => {
    handle(core, options, route, req, res, next).catch(next);
  };
}

async function handle(
  core: HttpIdempotency,
  options: ExpressIdempotencyOptions,
  route: (req: Request) => string,
  req: Request,
  res: Response,
  next: NextFunction,
): Promise<void> {
  const key = req.get(core.header) ?? null;
  if (!core.covers(req.method) || (key === null && options.required === false)) return next();
  const declared = core.tooLarge(req.get('content-length'));
  if (declared) return send(res, res.end, declared);
  if (req.body === undefined && (req.get('content-length') !== undefined || req.get('transfer-encoding') !== undefined)) {
    const raw = await readBody(req, core.maxRequestBytes);
    if (raw === undefined) return send(res, res.end, core.bodyTooLarge());
    req.body = raw;
  }
  const body = req.body;
  const q = req.originalUrl.indexOf('?');
  const begin = await core.begin({
    method: req.method,
    path: req.path,
    query: q < 0 ? '' : req.originalUrl.slice(q + 1),
    key,
    identity: await options.identity(req),
    route: route(req),
    body: typeof body === 'string' ? Buffer.from(body) : body,
    contentType: req.get('content-type') ?? null,
  });
  if (begin.kind === 'pass') return next();
  if (begin.kind === 'respond') return send(res, res.end, begin.response);
  hold(res, begin.run, core.maxResponseBytes);
  res.locals.idempotency = { signal: begin.run.signal, fence: begin.run.fence };
  next();
}

/**
 * Buffers what the handler writes (up to `max` bytes) and sends it only after the finish. Past
 * `max` the response streams through as it is written, uncached.
 */
/** Node's write and end, called with arguments as the handler gave them. */
type Raw = (this: Response, ...args: unknown[]) => unknown;

function hold(res: Response, run: Run, max: number): void {
  const { write: w, end: e, writeHead } = res;
  const write = w as unknown as Raw;
  const end = e as unknown as Raw;
  const chunks: Buffer[] = [];
  let size = 0;
  let through = false;
  let ended = false;
  const restore = () => {
    res.write = w;
    res.end = e;
    res.writeHead = writeHead;
  };
  const bytes = (chunk: unknown, encoding: unknown) =>
    Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk as Uint8Array);
  // Headers given to writeHead go onto the response, to be sent with the body at the end.
  res.writeHead = function (this: Response, status: number, ...rest: unknown[]) {
    this.statusCode = status;
    if (typeof rest[0] === 'string') this.statusMessage = rest.shift() as string;
    const headers = rest[0];
    if (Array.isArray(headers)) for (let i = 0; i < headers.length; i += 2) this.setHeader(headers[i], headers[i + 1]);
    else if (headers) for (const [name, value] of Object.entries(headers)) this.setHeader(name, value as string);
    return this;
  } as Response['writeHead'];
  res.write = function (this: Response, chunk: unknown, encoding?: unknown, callback?: unknown) {
    chunks.push(bytes(chunk, encoding));
    size += chunks.at(-1)!.byteLength;
    if (size > max && !through) {
      // Too large to store: from here on it streams through; the claim is failed or released at the end.
      through = true;
      res.write = w;
      res.writeHead = writeHead;
      write.call(this, Buffer.concat(chunks, size));
    }
    (typeof encoding === 'function' ? encoding : (callback as (() => void) | undefined))?.();
    return true;
  } as Response['write'];
  res.end = function (this: Response, chunk?: unknown, encoding?: unknown, callback?: unknown) {
    if (typeof chunk === 'function') callback = chunk;
    else if (chunk !== undefined && chunk !== null) {
      if (through) write.call(this, bytes(chunk, encoding));
      else (res.write as unknown as Raw).call(this, chunk, encoding);
    }
    if (typeof encoding === 'function') callback = encoding;
    ended = true;
    restore();
    const done = typeof callback === 'function' ? (callback as () => void) : undefined;
    if (through) {
      // The body has gone out; its end waits for the claim to be settled, so that a retry the
      // client sends once it has the whole response finds the key free, not in flight.
      void run.finish('uncacheable').then(() => end.call(this, done));
      return this;
    }
    const captured: CapturedResponse = { status: this.statusCode, headers: headersOf(this), body: Buffer.concat(chunks, size) };
    void run.finish(captured).then((answer) => {
      if (answer) send(this, e, answer, true);
      else end.call(this, captured.body, done);
    });
    return this;
  } as Response['end'];
  // The client went away before the response ended: settle the claim (the handler may still finish).
  res.on('close', () => {
    if (!ended) {
      restore();
      void run.crash(new Error('the connection closed before the response ended'));
    }
  });
}

function headersOf(res: Response): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(res.getHeaders())) {
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else if (value !== undefined) out.push([name, String(value)]);
  }
  return out;
}

/**
 * Sends a whole response the core decided on (a replay or a problem); with `replace`, none of the
 * headers the handler set go with it (a problem in place of the handler's response).
 */
function send(res: Response, end: Response['end'], response: CapturedResponse, replace = false): void {
  if (replace) for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.statusCode = response.status;
  const grouped = new Map<string, string[]>();
  for (const [name, value] of response.headers) grouped.set(name.toLowerCase(), [...(grouped.get(name.toLowerCase()) ?? []), value]);
  for (const [name, values] of grouped) res.setHeader(name, values.length === 1 ? values[0]! : values);
  res.setHeader('content-length', response.body.byteLength);
  (end as unknown as Raw).call(res, response.body);
}

/** The raw body, or undefined past `max` bytes. */
async function readBody(req: Request, max: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
