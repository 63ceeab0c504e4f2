// RFC 9457 problem details: the one writer of every error body the middleware answers.
import type { CapturedResponse } from './core.js';

/** Stable codes of the problems answered (the `code` member), one per meaning. */
export type ProblemCode =
  | 'IDEMPOTENCY_KEY_MISSING'
  | 'IDEMPOTENCY_KEY_INVALID'
  | 'INVALID_BODY'
  | 'REQUEST_TOO_LARGE'
  | 'KEY_REUSE_MISMATCH'
  | 'IN_FLIGHT'
  | 'LEASE_LOST'
  | 'BACKEND_UNAVAILABLE'
  | 'INTERNAL';

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  409: 'Conflict',
  413: 'Content Too Large',
  422: 'Unprocessable Content',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** An `application/problem+json` response: type about:blank (the status says what), title, status, detail, and idem's code. */
export function problem(status: number, code: ProblemCode, detail: string): CapturedResponse {
  const body = JSON.stringify({ type: 'about:blank', title: TITLES[status] ?? 'Error', status, detail, code });
  return { status, headers: [['content-type', 'application/problem+json']], body: Buffer.from(body) };
}
