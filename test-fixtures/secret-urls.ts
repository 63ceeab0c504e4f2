// Store URLs that carry a secret, valid and malformed: no error, log line,
// --json field or listing may ever show SECRET or USER (issue 9, item 4).
// Hosts that would parse point at 127.0.0.1:1 so that opening fails fast.

/** The password (or key, token) in every URL below. */
export const SECRET = 'Zq7hunter2Sekret';
/** A user name: userinfo as a whole is never shown. */
export const USER = 'Uv4adminName';

const S = SECRET;
const U = USER;

export const SECRET_URLS: readonly string[] = [
  // Userinfo with characters that confuse naive parsers.
  `redis://${U}:p@${S}@127.0.0.1:1`,
  `redis://${U}:pa/${S}@127.0.0.1:1`,
  `redis://${U}:pa#${S}@127.0.0.1:1`,
  `redis://${U}:pa?${S}@127.0.0.1:1`,
  `redis://${U}:${S}@@127.0.0.1:1`,
  `redis://${U}@${S}:p@127.0.0.1:1`,
  `redis://${S}@127.0.0.1:1`,
  `redis://:${S}@127.0.0.1:1/0`,
  `redis://${U}:${S}@127.0.0.1:1/0`,
  `REDIS://${U}:${S}@127.0.0.1:1`,
  `rediss://${U}:${S}@127.0.0.1:99999`,
  `valkey://${U}:${S}@/x`,
  `valkeys://${U}:${S}@127.0.0.1:1/db1`,
  `redis://${U}:${S}@127.0.0.1:1/16?cluster=true`,
  `redis://${U}:${S}`,
  `redis://${U}:${S}%40@127.0.0.1:1%`,
  // Sentinel: data-node userinfo, sentinel password in the query, malformed host lists.
  `redis+sentinel://${U}:${S}@127.0.0.1:1,127.0.0.1:2/mymaster`,
  `redis+sentinel://127.0.0.1:1/mymaster?sentinelPassword=${S}`,
  `valkey+sentinel://${U}:p@${S}@127.0.0.1:1/mymaster/0`,
  `redis+sentinel://${U}:${S}@/mymaster`,
  `redis://${U}:${S}@127.0.0.1:1?minReplicas=x`,
  `redis://${U}:%${S}@127.0.0.1:1`,
  `redis://${U}:${S}@127.0.0.1:1?cluster=maybe`,
  `redis://${U}:${S}@127.0.0.1:1#frag`,
  `redis://127.0.0.1:1#${S}`,
  // Secret-bearing parameters.
  `redis://127.0.0.1:1?password=${S}`,
  `redis://127.0.0.1:1?prefix=p&token=${S}`,
  `redis://127.0.0.1:1?cluster=true&nodes=${U}:${S}@127.0.0.1:2`,
  `redis://127.0.0.1:1?cluster=true&nodes=${U}%3A${S}%40127.0.0.1%3A2`,
  `redis://${U}:${S}@127.0.0.1:1?cluster=true&nodes=127.0.0.1:x`,
  // Object stores: credentials never belong in the URL.
  `s3://AKIA${U}:abc/${S}@bucket`,
  `s3://AKIA${U}:${S}@bucket/p`,
  `s3://bucket/p?endpoint=http://AKIA${U}:${S}@127.0.0.1:1`,
  `s3://bucket/p?endpoint=${encodeURIComponent(`http://AKIA${U}:${S}@127.0.0.1:1`)}`,
  `s3://bucket/p?endpoint=http://127.0.0.1:1&secret=${S}`,
  `s3://bucket/p?region=us-east-1&key=${S}`,
  `s3://bucket/p?endpoint=not a url ${S}`,
  `s3://AKIA${U}:${S}@bucket/%E0%`,
  `gs://${U}:${S}@bucket/p`,
  `gs://bucket/p?token=${S}`,
  // PostgreSQL: libpq's URL form; the password in userinfo or a parameter, malformed shapes.
  `postgres://${U}:${S}@127.0.0.1:1/db`,
  `postgresql://${U}:p@${S}@127.0.0.1:1/db?table=t`,
  `postgres://${U}:${S}@127.0.0.1:1/db?password=${S}`,
  `postgres://${U}:${S}@127.0.0.1:1/db?table=Bad-Name`,
  `postgres://${U}:${S}@127.0.0.1:1/a/b`,
  `postgres://${U}:%${S}@127.0.0.1:1/db`,
  `POSTGRES://${U}:${S}@/db`,
  // Other schemes and shapes.
  `lmdb://${U}:${S}@host/x`,
  `lmdb:relative/x?password=${S}`,
  `mysql://${U}:${S}@db`,
  `nope+x://${U}:${S}@h`,
  `${U}:${S}@127.0.0.1:1`,
  `//${U}:${S}@127.0.0.1:1`,
];
