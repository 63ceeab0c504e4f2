// CommonJS consumer: require() of every entry point of every package (Node >= 22.12 loads ES modules this way).
const { entries, verify } = require('./entries.cjs');
for (const { specifier, member } of entries) verify(specifier, member, require(specifier));
console.log(`required ${entries.length} entry points`);
