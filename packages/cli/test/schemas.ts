// The JSON Schemas of every --json output (packages/cli/schemas), compiled with a real
// draft 2020-12 validator. helpers.ts checks every JSON object an end-to-end test gets
// from `idem <command> --json` against its command's schema, so every test on every
// backend checks its outputs.
import { readdirSync, readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';

export const SCHEMA_DIR = new URL('../schemas/', import.meta.url);

type Json = null | boolean | number | string | Json[] | { [name: string]: Json };
export type Schema = { [name: string]: Json };

/** Every shipped schema by command: schemas/<command>.schema.json. */
export const SCHEMAS: Readonly<Record<string, Schema>> = Object.fromEntries(
  readdirSync(SCHEMA_DIR)
    .filter((file) => file.endsWith('.schema.json'))
    .sort()
    .map((file) => [file.slice(0, -'.schema.json'.length), JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), 'utf8')) as Schema]),
);

const isObjectType = (type: Json | undefined) => type === 'object' || (Array.isArray(type) && type.includes('object'));

/**
 * The schema as the tests hold the CLI to it: every object that lists its properties gets
 * `additionalProperties: false`. The shipped schemas leave objects open (readers of an older
 * schema must accept fields added since), but a field the CLI prints must be in the schema.
 * Only real object definitions are closed, never the `if`/`then` parts that refine them.
 */
export function closed(node: Json): Json {
  if (Array.isArray(node)) return node.map(closed);
  if (node === null || typeof node !== 'object') return node;
  const copy: Schema = Object.fromEntries(Object.entries(node).map(([name, value]) => [name, closed(value)]));
  if (isObjectType(node.type) && node.properties !== undefined && node.additionalProperties === undefined) copy.additionalProperties = false;
  return copy;
}

/** A strict 2020-12 validator: unknown keywords and other schema mistakes throw at compile time. */
export const newAjv = () => new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });

const ajv = newAjv();
const validators = new Map<string, ValidateFunction>(Object.entries(SCHEMAS).map(([command, schema]) => [command, ajv.compile(closed(schema) as object)]));

/** Why `value` does not follow the (closed) schema of `command`; undefined when it does. */
export function violations(command: string, value: unknown): string | undefined {
  const validate = validators.get(command);
  if (!validate) return `no schema for the JSON of idem ${command}: add packages/cli/schemas/${command}.schema.json (and its package.json export)`;
  if (validate(value)) return undefined;
  return (validate.errors ?? [])
    .map((e) => `output${e.instancePath} ${e.message}${e.keyword === 'additionalProperties' ? `: ${JSON.stringify(e.params.additionalProperty)}` : ''}`)
    .join('\n  ');
}

/**
 * Checks what one `idem ...args` printed on stdout. JSON counts as idem's own only under
 * --json (before any `--`: after it, the wrapped command's stdout is not idem's); help,
 * human output and usage errors (nothing on stdout) are not JSON and are skipped.
 */
export function checkOutput(args: readonly string[], json: unknown): void {
  if (json === undefined) return;
  const end = args.indexOf('--');
  if (!(end === -1 ? args : args.slice(0, end)).includes('--json')) return;
  const command = args[0] ?? '';
  const problem = violations(command, json);
  if (problem !== undefined)
    throw new Error(`idem ${args.join(' ')}: its --json output breaks ${command}.schema.json:\n  ${problem}\noutput: ${JSON.stringify(json)}`);
}
