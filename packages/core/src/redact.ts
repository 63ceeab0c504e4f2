// Secret redaction for store URLs (re-exported by `@idem/core/url`): what of
// a URL may be printed, and the scrubbing of messages and errors that could
// quote its secret parts. No I/O, no imports beyond the error classes.
import { IdemError, InvalidStoreUrlError } from './errors.js';

/** A URL's scheme with its ":" (group 1: the scheme). */
export const SCHEME = /^([a-z][a-z0-9+.-]*):/i;

/** An INVALID_STORE_URL error for handlers: the URL is shown redacted; `why` must not quote secret parts. */
export function storeUrlError(url: string, why: string): InvalidStoreUrlError {
  return new InvalidStoreUrlError(scrubUrlSecrets(`store URL ${JSON.stringify(redactStoreUrl(url))}: ${why}`, url));
}

/** Quotes a piece of a URL for an error message, unless it could carry a credential. */
export function quoteUrlPart(value: string, max = 80): string {
  if (/[@%]/.test(value) || value.length > max) return '(not shown)';
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------
// Redaction. Conservative for any shape, valid or not: everything between the
// scheme and the LAST "@" is dropped (a password may hold "@", "/" or ":",
// so no earlier "@" can be trusted), the fragment is dropped, a host with a
// non-numeric "port" is hidden, and so is every query value whose name smells of a
// secret or whose value is not plain (endpoint=http://KEY:SECRET@host).

const SECRET_NAME = /pass|pwd|secret|token|key|auth|cred|sig|session|private|cookie|bearer/i;

/** Plain values (hosts, ports, URLs without userinfo, prefixes, flags) are shown; anything else may hide a credential. */
const PLAIN_VALUE = /^[A-Za-z0-9._~,:/+[\]-]*$/;

function hiddenParam(name: string, value: string): boolean {
  return SECRET_NAME.test(decode(name)) || !PLAIN_VALUE.test(decode(value));
}

/** Percent-decoding that keeps text it cannot decode as it is. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch (error) {
    if (error instanceof URIError) return text; // malformed escape: judge the raw text instead
    throw error;
  }
}

interface Split {
  scheme: string;
  slashes: string;
  /** Text between the scheme and the last "@", when there is one. */
  userinfo: string | undefined;
  authority: string;
  path: string;
  query: string | undefined;
  fragment: string | undefined;
}

function split(url: string): Split {
  let scheme = SCHEME.exec(url)?.[0] ?? '';
  let rest = url.slice(scheme.length);
  const slashes = rest.startsWith('//') ? '//' : '';
  rest = rest.slice(slashes.length);
  // "user:pass@host" has no scheme at all: what looks like one is the user name.
  if (!slashes && rest.includes('@')) {
    rest = url;
    scheme = '';
  }
  const at = rest.lastIndexOf('@');
  const userinfo = at >= 0 ? rest.slice(0, at) : undefined;
  if (at >= 0) rest = rest.slice(at + 1);
  const hash = rest.indexOf('#');
  const fragment = hash >= 0 ? rest.slice(hash + 1) : undefined;
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q + 1) : undefined;
  if (q >= 0) rest = rest.slice(0, q);
  const slash = slashes ? rest.indexOf('/') : -1;
  const authority = slashes ? (slash >= 0 ? rest.slice(0, slash) : rest) : '';
  const path = slashes ? (slash >= 0 ? rest.slice(slash) : '') : rest;
  return { scheme, slashes, userinfo, authority, path, query, fragment };
}

/** `host:port` with a port that is not a number: the "port" may be a password typed without its "@". */
function portIsOdd(authority: string): string | undefined {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/s.exec(authority);
  const port = m?.[2];
  return port !== undefined && !/^\d*$/.test(port) ? m![1] : undefined;
}

/**
 * The URL with nothing secret left: no userinfo (shown as `***@`), no
 * fragment, and `***` for secret-bearing query values. Never throws.
 */
export function redactStoreUrl(url: string): string {
  if (typeof url !== 'string') return '(not a string)';
  const s = split(url);
  // "user:password" typed without "@host": neither part can be shown.
  const authority = portIsOdd(s.authority) !== undefined ? '***' : s.authority;
  let out = `${s.scheme}${s.slashes}${s.userinfo !== undefined ? '***@' : ''}${authority}${s.path}`;
  if (s.query !== undefined) {
    const parts = s.query.split('&').map((part) => {
      const eq = part.indexOf('=');
      if (eq < 0) return SECRET_NAME.test(decode(part)) ? '***' : part;
      const name = part.slice(0, eq);
      const value = part.slice(eq + 1);
      return hiddenParam(name, value) ? `${name}=***` : part;
    });
    out += `?${parts.join('&')}`;
  }
  return out;
}

/** Every substring of the URL that could be secret, longest first (for scrubbing messages). */
function secretParts(url: string): string[] {
  const s = split(url);
  const found = new Set<string>();
  const add = (text: string | undefined, pieces = true) => {
    if (!text) return;
    for (const t of [text, decode(text)]) {
      for (const piece of pieces ? [t, ...t.split(/[:@/]+/)] : [t]) {
        found.add(piece);
        found.add(piece.toLowerCase()); // schemes are echoed lower-cased
      }
    }
  };
  add(s.userinfo);
  add(s.fragment);
  if (portIsOdd(s.authority) !== undefined) add(s.authority);
  for (const part of s.query?.split('&') ?? []) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (SECRET_NAME.test(decode(name))) add(eq < 0 ? part : value);
    else if (eq >= 0 && hiddenParam(name, value)) add(value, false);
    const decoded = decode(value);
    const at = decoded.lastIndexOf('@');
    if (at >= 0) add(decoded.slice(0, at).replace(/^[a-z][a-z0-9+.-]*:\/\//i, ''));
  }
  // Short pieces ("u", "p") cannot be scrubbed without mangling every message;
  // messages are built from redacted parts, this is only the safety net.
  return [...found].filter((p) => p.length >= 3).sort((a, b) => b.length - a.length);
}

/** `text` with every possibly secret part of `url` replaced by ***. */
export function scrubUrlSecrets(text: string, url: string): string {
  let out = text;
  for (const part of secretParts(url)) out = out.split(part).join('***');
  return out;
}

/** Removes secrets of `url` from an error's message and stack; drops causes that may quote the URL. */
export function scrubError(error: unknown, url: string): unknown {
  if (!(error instanceof Error)) return new InvalidStoreUrlError(scrubUrlSecrets(String(error), url));
  const message = scrubUrlSecrets(error.message, url);
  if (message !== error.message) {
    try {
      error.message = message;
      if (typeof error.stack === 'string') error.stack = scrubUrlSecrets(error.stack, url);
    } catch (cause) {
      // A frozen error cannot be cleaned: replace it, keeping the code.
      const code = (error as { code?: unknown }).code;
      return new IdemError(typeof code === 'string' ? (code as IdemError['code']) : 'INVALID_STORE_URL', message, { cause });
    }
  }
  return error;
}
