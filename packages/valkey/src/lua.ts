// The server-side scripts. Each runs atomically inside Valkey/Redis, so
// reading the record, judging it by the server's own clock (TIME) and writing
// it back is one indivisible step: no client clock, no read-then-write race.
// They mirror @idem/core's decideClaim / decideFinish case by case.
//
// Each script touches one key (KEYS[1], the record), so it runs unchanged on a
// cluster. Only redis.call/pcall are used (Redis 7.0 has no server.call).
//
// Fencing without a second key: a record stays in Valkey for `linger` ms
// after it stops counting (lease + linger for a claim, retention + linger for
// a finished record, linger for a released or deleted one), and the next
// claim continues from its fence. A key with no trace left starts from the
// server's clock in ms, and every fence is at least the clock at its claim,
// so that start exceeds any fence the key had unless the server's clock went
// back by more than the linger.

import { RECORD_LAYOUT, RECORD_VERSION } from '@idem/core/adapter';

/** Where encode() takes each field from: the decoded record, or (result, error) the client's JSON text. */
const FROM_ARGUMENT: Record<string, string> = { result: 'result', error: 'err' };

/** encode()'s body, one line per field of core's layout, in its order. */
const ENCODE = { int: 'num', string: 'str', object: 'obj', json: 'str' } as const;
const ENCODE_FIELDS = RECORD_LAYOUT.map(([name, kind]) => {
  const arg = FROM_ARGUMENT[name];
  const value = arg ?? `r.${name}`;
  const text = arg !== undefined ? arg : `${ENCODE[kind]}(${value})`;
  return `  if ${value} ~= nil then p[#p + 1] = '"${name}":' .. ${text} end`;
}).join('\n');

/** The server's time in ms, from the reply `t` of redis.call('TIME'): inlined where no helper is defined yet. */
const MS_OF_TIME = 'tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)';

/** Helpers: server time, a strict parse (as core's parseRecord), and encoding. */
const COMMON = `
local function now_ms()
  local t = redis.call('TIME')
  return ${MS_OF_TIME}
end
local function int(x) return type(x) == 'number' and x == math.floor(x) and math.abs(x) <= 9007199254740991 end
local function optint(x) return x == nil or int(x) end
local function optstr(x) return x == nil or type(x) == 'string' end
local function optholder(x)
  return x == nil or (type(x) == 'table' and type(x.host) == 'string' and int(x.pid) and type(x.version) == 'string' and optstr(x.program))
end
local function optlabels(x)
  if x == nil then return true end
  if type(x) ~= 'table' then return false end
  for k, v in pairs(x) do if type(k) ~= 'string' or type(v) ~= 'string' then return false end end
  return true
end
local STATUS = { in_flight = true, succeeded = true, failed = true }

-- raw, record, why: absent -> nil, nil, nil; unreadable -> raw?, nil, why (never overwritten)
-- decode takes what redis.pcall('GET') answered; load reads it first.
local function decode(raw)
  if type(raw) == 'table' and raw.err then return nil, nil, raw.err end
  if not raw then return nil, nil, nil end
  local ok, r = pcall(cjson.decode, raw)
  if not ok or type(r) ~= 'table' then return raw, nil, 'not a JSON object' end
  if r.v ~= ${RECORD_VERSION} then return raw, nil, 'unknown schema version' end
  local good = type(r.key) == 'string' and type(r.status) == 'string' and STATUS[r.status]
    and type(r.runId) == 'string' and int(r.fence) and int(r.attempt) and int(r.claimedAt)
    and optstr(r.fingerprint) and optstr(r.error) and optint(r.leaseExpiresAt)
    and optint(r.completedAt) and optint(r.expiresAt) and (r.status ~= 'in_flight' or int(r.leaseExpiresAt))
    and optholder(r.holder) and optlabels(r.labels)
  if not good then return raw, nil, 'fields missing or of the wrong type' end
  return raw, r, nil
end
local function load(k) return decode(redis.pcall('GET', k)) end

-- A script that changes nothing still writes, so that a WAIT after it (minReplicas) counts the
-- replicas holding everything up to now on the primary, an unacknowledged earlier attempt of this
-- very operation included (WAIT counts the writes of its own connection, which may be a new one).
-- A record is written again as it is; an absent key gets a SET and a DEL that leave it absent.
local function touch(k, raw)
  if raw then
    redis.call('SET', k, raw, 'KEEPTTL')
  else
    redis.call('SET', k, '', 'PX', 1)
    redis.call('DEL', k)
  end
end

local function expired(r, now) return r.expiresAt ~= nil and r.expiresAt <= now end

-- tostring() would print 1.7e+12; integers are written digit by digit.
local function num(x) return string.format('%d', x) end
-- Strings as JSON.stringify writes them (core's serializeRecord): cjson alone escapes a slash (as
-- \\/: every "/" it writes has one) and DEL (as \\u007f: undone only where the run of backslashes
-- before "u007f" is odd, so that an escaped backslash followed by the text u007f stays as it is).
local function undel(b) if #b % 2 == 1 then return string.sub(b, 2) .. '\\127' end end
local function str(s) return (string.gsub(string.gsub(cjson.encode(s), '\\\\/', '/'), '(\\\\+)u007f', undel)) end
-- A flat object (holder, labels) as core's sortedObject writes it: names sorted, strings and integers.
local function obj(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  -- Byte order, as JavaScript's sort of these ASCII names: Lua's "<" follows the server's locale (strcoll).
  table.sort(names, function(a, b)
    for i = 1, math.min(#a, #b) do
      local x, y = string.byte(a, i), string.byte(b, i)
      if x ~= y then return x < y end
    end
    return #a < #b
  end)
  local p = {}
  for i, k in ipairs(names) do
    local v = t[k]
    p[i] = str(k) .. ':' .. (type(v) == 'number' and num(v) or str(v))
  end
  return '{' .. table.concat(p, ',') .. '}'
end
-- Never cjson.encode a whole record: it would rewrite the caller's result ([] as {}, 14-digit numbers).
-- result and error arrive as JSON text made by the client and are inserted as they are.
-- Generated from core's RECORD_LAYOUT: the fields in its order, each in its encoding.
local function encode(r, result, err)
  local p = {}
${ENCODE_FIELDS}
  return '{' .. table.concat(p, ',') .. '}'
end
`;

// The duplicate fast path reads a record by the layout this store writes (the SET NX above,
// body() and encode()): these fields first, in this order, then result or error. A string field is
// matched only without a quote, a backslash or a control character (so no escape can hide a field
// inside it); a number only as digits without a leading zero.
const STR_BODY = '[^"\\\\%c]*';
const STR = `"${STR_BODY}"`;
const NUM = '[1-9]%d*';

/**
 * claim(KEYS: record; ARGV: head, fingerprintPart, fingerprint|'', runId, leaseMs, lingerMs, force '1'|'0', dedupOn, mode|'', holderPart, labelsPart)
 * mode is for tests only: 'full' skips the duplicate fast path, 'fast' answers {'slow'} where it would fall through.
 * head is the new record's JSON up to `"fence":`, fingerprintPart is `,"fingerprint":"..."` or '' (both made by the client).
 * -> server ms (a fresh key, taken by SET NX), or {outcome, record JSON, previous JSON|false};
 *    outcome: acquired | adopted | own | in_flight | completed | reuse | corrupt
 */
export const CLAIM_LUA = `
local rk = KEYS[1]
local head, fpPart, fp, runId = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local leaseMs, lingerMs = tonumber(ARGV[5]), tonumber(ARGV[6])
local force, dedupOn = ARGV[7] == '1', ARGV[8]
-- holderPart: ,"holder":{...}; labelsPart: ,"labels":{...} or empty (made by the client, names sorted).
local holderPart, labelsPart = ARGV[10] or '', ARGV[11] or ''
local t = redis.call('TIME')
local now = ${MS_OF_TIME}
local RECORD = '%s%d,"attempt":%d%s,"claimedAt":%d,"leaseExpiresAt":%d%s%s}'

-- Timeline of the fast path: t0 SET NX. A key with no trace at all (no record, no lingering one,
-- nothing foreign) is taken by this one write, and of N racing claimers exactly one gets OK.
-- It comes before the helpers below are even defined, and builds its record with one
-- string.format: the common claim runs only what it needs (server time per call is what it costs).
-- Its reply is only the time it wrote: the client knows the rest of the record it sent.
if redis.call('SET', rk, string.format(RECORD, head, now, 1, fpPart, now, now + leaseMs, holderPart, labelsPart), 'NX', 'PX', leaseMs + lingerMs) then return now end
local got = redis.pcall('GET', rk)

-- The duplicate fast path: a record in the store's own layout that this claim only answers
-- (completed, in_flight of another runId, reuse) is read with anchored plain patterns, no JSON
-- decoded and no helper defined. It never writes. Any deviation from the layout, and every case
-- that writes (a take, an adoption, our own claim, force, an expired record), falls through to the
-- full path below, which decodes and validates the record and stays the reference. What the
-- patterns do not read (key, fence, attempt, times, result, error) the client parses strictly
-- (parseRecord): bytes that do not parse are CORRUPT_RECORD there, as the full path would answer.
-- Not covered: bytes forged to repeat a top-level field after the result (no writer of this store
-- does that) are judged here by the first copy, by a JSON decoder by the last.
-- ARGV[9] is absent in the store's calls; fastpath.test.ts sets it to compare both paths.
if ARGV[9] ~= 'full' and type(got) == 'string' then
  local st, ru, p = string.match(got, '^{"v":${RECORD_VERSION},"key":${STR},"status":"(%l[%l_]*)","runId":"(${STR_BODY})","fence":${NUM},"attempt":${NUM}()')
  local ok = p and (st == 'in_flight' or st == 'succeeded' or st == 'failed')
  local f, le, ex, q
  if ok then
    f, q = string.match(got, '^,"fingerprint":"(${STR_BODY})"()', p)
    p = string.match(got, '^,"claimedAt":${NUM}()', q or p)
    ok = p ~= nil
  end
  if ok then
    le, q = string.match(got, '^,"leaseExpiresAt":(${NUM})()', p)
    p = q or p
    p = string.match(got, '^,"completedAt":${NUM}()', p) or p
    ex, q = string.match(got, '^,"expiresAt":(${NUM})()', p)
    p = q or p
    -- Then the end, or the holder, labels, result (any JSON) or error, which the client parses.
    ok = (p == #got and string.byte(got, p) == 125) or string.find(got, '^,"holder":{', p) or string.find(got, '^,"labels":{', p)
      or string.find(got, '^,"result":', p) or string.find(got, '^,"error":"', p)
  end
  -- Decided as below: live (not expired) and not force; then reuse, a live lease of another runId, a final outcome.
  if ok and not force and not (ex and tonumber(ex) <= now) then
    if fp ~= '' and f and f ~= fp then return { 'reuse', got } end
    if st == 'in_flight' then
      if le and tonumber(le) > now and ru ~= runId then return { 'in_flight', got } end
    elseif st == 'succeeded' or dedupOn == 'any' then
      return { 'completed', got }
    end
  end
  if ARGV[9] == 'fast' then return { 'slow' } end
end

local function body(fence, attempt, labels)
  return string.format(RECORD, head, fence, attempt, fpPart, now, now + leaseMs, holderPart, labels)
end
${COMMON}
local raw, cur, why = decode(got)
if why then return { 'corrupt', why } end
if not cur then return { 'corrupt', 'vanished inside a script' } end
local live = cur
if expired(cur, now) then live = nil end

if live and fp ~= '' and live.fingerprint and live.fingerprint ~= fp and not force then return { 'reuse', raw } end

-- Timeline of a take: t0 GET (above) ... decide ... t1 SET PX lease + linger. Nothing runs between
-- t0 and t1 (scripts are atomic): every other claimer sees the record before t0 or ours after t1.
local function take(outcome)
  -- A claim without labels keeps those of the live record it takes over (as core's decideClaim).
  local labels = labelsPart
  if labels == '' and live and live.labels then labels = ',"labels":' .. obj(live.labels) end
  local b = body(math.max(cur.fence + 1, now), (live and live.attempt or 0) + 1, labels)
  redis.call('SET', rk, b, 'PX', leaseMs + lingerMs)
  return { outcome, b, live and raw or false }
end

if not live then return take('acquired') end
if force then return take('adopted') end
if live.status == 'in_flight' then
  if live.leaseExpiresAt <= now then return take('adopted') end
  -- Our own live claim: a retry whose first reply was lost after the write landed. Written again
  -- as it is, so that a WAIT after this script (minReplicas) waits for it on this connection too.
  if live.runId == runId then
    redis.call('SET', rk, raw, 'KEEPTTL')
    return { 'own', raw }
  end
  return { 'in_flight', raw }
end
if live.status == 'succeeded' or dedupOn == 'any' then return { 'completed', raw } end
return take('acquired')
`;

/**
 * finish(KEYS: record; ARGV: op, runId, fence, leaseMs, retentionMs, lingerMs, payload|'', expected|'', head|'', tail|'')
 * expected: the exact bytes of the in_flight record this lease holds (as the server wrote them);
 * head and tail: the finished record around its two times, made by the client from those bytes.
 * -> server ms (the fast path: the record was `expected`, now head .. now .. expiresAt .. tail)
 *    | {'ok', record JSON|false} | {'lost', record JSON|false} | {'corrupt', why}
 */
export const FINISH_LUA = `
local rk = KEYS[1]
local retentionMs, lingerMs = tonumber(ARGV[5]), tonumber(ARGV[6])

-- The fast path of complete and fail. Timeline: t0 GET; the record is byte for byte the in_flight
-- record this lease holds (so its fence and runId are ours, its lease is not ended, and it was
-- valid when the client parsed it) ... t1 SET of the finished record. Anything else, an older
-- layout included, takes the full path below, which decodes the record and judges each field.
-- Comparing two Lua strings is one pointer comparison (they are interned): no JSON decoded.
if ARGV[8] ~= '' and redis.pcall('GET', rk) == ARGV[8] then
  local t = redis.call('TIME')
  local now = ${MS_OF_TIME}
  redis.call('SET', rk, ARGV[9] .. string.format('%d', now) .. ',"expiresAt":' .. string.format('%d', now + retentionMs) .. ARGV[10], 'PX', retentionMs + lingerMs)
  return now
end
${COMMON}
local op, runId, fence = ARGV[1], ARGV[2], tonumber(ARGV[3])
local leaseMs = tonumber(ARGV[4])
local payload = ARGV[7] ~= '' and ARGV[7] or nil

local raw, cur, why = load(rk)
if why then return { 'corrupt', why } end
local now = now_ms()
local gone = cur == nil or expired(cur, now)
-- Releasing what is already gone leaves the key free, which is all release promises.
if gone and op == 'release' then
  touch(rk, raw)
  return { 'ok', false }
end
if gone then return { 'lost', false } end
if cur.fence ~= fence or cur.runId ~= runId then return { 'lost', raw } end
if cur.status ~= 'in_flight' then
  -- A repeated finish (a retry after a lost reply) of the same outcome is answered, not redone;
  -- written again as it is, for the same reason as a claim's 'own' (WAIT counts this connection's writes).
  if (op == 'complete' and cur.status == 'succeeded') or (op == 'fail' and cur.status == 'failed') then
    touch(rk, raw)
    return { 'ok', raw }
  end
  return { 'lost', raw }
end

-- Timeline of every write below: t0 GET, compare fence and runId ... t1 SET. Atomic, so a takeover
-- comes before t0 (we answer lost) or after t1 (it sees what we wrote). A deadline alone never locks
-- the owner out: only a takeover changes the fence.
local body, ttl
if op == 'renew' then
  cur.leaseExpiresAt = now + leaseMs
  body, ttl = encode(cur), leaseMs + lingerMs
elseif op == 'release' then
  -- Past retention at once, so the key is free; it lingers only to hand its fence on.
  cur.leaseExpiresAt, cur.expiresAt = now, now
  body, ttl = encode(cur), lingerMs
else
  cur.leaseExpiresAt, cur.completedAt, cur.expiresAt = nil, now, now + retentionMs
  if op == 'complete' then
    cur.status = 'succeeded'
    body = encode(cur, payload, nil)
  else
    cur.status = 'failed'
    body = encode(cur, nil, payload)
  end
  ttl = retentionMs + lingerMs
end
redis.call('SET', rk, body, 'PX', ttl)
if op == 'release' then return { 'ok', false } end
return { 'ok', body }
`;

/**
 * remove(KEYS: record; ARGV: lingerMs) -> 1 if a live record was there, else 0.
 * A readable record is made past retention (it lingers to hand its fence on); anything else is deleted.
 * Nothing live (a retry whose first attempt landed, or no record): still a write, see touch().
 */
export const REMOVE_LUA = `${COMMON}
local rk = KEYS[1]
local raw, cur, why = load(rk)
if why then return redis.call('DEL', rk) end
local now = cur and now_ms()
if not cur or expired(cur, now) then
  touch(rk, raw)
  return 0
end
if cur.status == 'in_flight' then cur.leaseExpiresAt = now end
cur.expiresAt = now
redis.call('SET', rk, encode(cur), 'PX', tonumber(ARGV[1]))
return 1
`;

/**
 * read(KEYS: record) -> {'none'} | {'found', raw bytes, server ms} | {'corrupt', why}
 * The server's time comes with the record so that expiry is judged by the same clock that wrote it.
 */
export const READ_LUA = `
local raw = redis.pcall('GET', KEYS[1])
if type(raw) == 'table' and raw.err then return { 'corrupt', raw.err } end
if not raw then return { 'none' } end
local t = redis.call('TIME')
return { 'found', raw, string.format('%d', ${MS_OF_TIME}) }
`;
