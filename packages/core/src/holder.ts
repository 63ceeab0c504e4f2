// Who this process is, as written on the records of its claims (`holder`).
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Holder } from './record.js';

/** The version of @idem/core, as its package.json says (one level up from src/ and from dist/). */
export const CORE_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/** This process: host name, pid and core's version. A claim may add `program`. */
export const PROCESS_HOLDER: Readonly<Holder> = Object.freeze({ host: hostname(), pid: process.pid, version: CORE_VERSION });
