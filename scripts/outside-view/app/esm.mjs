// ESM consumer: import() of every entry point of every package.
import { createRequire } from 'node:module';
const { entries, verify } = createRequire(import.meta.url)('./entries.cjs');
for (const { specifier, member } of entries) verify(specifier, member, await import(specifier));
console.log(`imported ${entries.length} entry points: ${entries.map((e) => e.specifier).join(' ')}`);
