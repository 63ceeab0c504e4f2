// Every entry point of every installed @idem package (each subpath of its `exports`),
// with a member the main entry must have.
const { readFileSync } = require('node:fs');
const main = {
  '@idem/core': 'runOnce',
  '@idem/lmdb': 'createLmdbStore',
  '@idem/valkey': 'createValkeyStore',
  '@idem/s3': 'createS3Store',
  '@idem/gcs': 'createGcsStore',
  '@idem/postgres': 'createPostgresStore',
  '@idem/conformance': 'runConformance',
  '@idem/cli': 'parseStoreUrl',
};
const entries = [];
for (const [name, member] of Object.entries(main)) {
  const { exports } = JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8'));
  for (const subpath of Object.keys(exports)) {
    if (subpath.endsWith('.json')) continue;
    entries.push({ specifier: name + subpath.slice(1), member: subpath === '.' ? member : undefined });
  }
}
function verify(specifier, member, mod) {
  if (Object.keys(mod).length === 0) throw new Error(`${specifier}: no exports`);
  if (member !== undefined && typeof mod[member] !== 'function') throw new Error(`${specifier}: ${member} is ${typeof mod[member]}`);
}
module.exports = { entries, verify };
