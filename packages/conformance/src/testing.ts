// Helpers shared by the suite and by adapters' own fault tests
// (`@idem/conformance/testing`), so that each is written once.
import { expect } from 'vitest';
import { IdemError, type ClaimOutcome, type Lease } from '@idem/core';

export { TestClock } from './clock.js';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The lease of an `acquired` or `adopted` claim; throws on any other outcome. */
export function expectLease(outcome: ClaimOutcome): Lease {
  if (outcome.outcome !== 'acquired' && outcome.outcome !== 'adopted') throw new Error(`expected a lease, got ${outcome.outcome}`);
  return outcome.lease;
}

/** What `promise` (or `fn()`) rejected with, asserted to be an IdemError. */
export async function expectIdemError(promise: Promise<unknown> | (() => unknown)): Promise<IdemError> {
  const error = await errorOf(promise);
  expect(error, 'expected an IdemError').toBeInstanceOf(IdemError);
  return error as IdemError;
}

/** Asserts that `promise` (or `fn()`) rejects with an IdemError of this code, and returns it. */
export async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<IdemError> {
  const error = await errorOf(promise);
  expect(error, `expected an IdemError with code ${code}`).toBeInstanceOf(IdemError);
  expect((error as IdemError).code).toBe(code);
  return error as IdemError;
}

/** The IdemError code `promise` rejects with, or 'no error'; anything else is rethrown. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error = await errorOf(promise);
  if (error === undefined) return 'no error';
  if (error instanceof IdemError) return error.code;
  throw error;
}

async function errorOf(promise: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    return error;
  }
  return undefined;
}

let seq = 0;
/**
 * A name no other test, worker or run uses: label, process, time, counter.
 * Build fresh prefixes, namespaces and keys from it.
 */
export function uniqueName(label = 'test'): string {
  return `${label}-${process.pid}-${Date.now().toString(36)}-${seq++}`;
}
