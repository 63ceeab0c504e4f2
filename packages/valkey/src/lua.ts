// The two server-side scripts. Each runs atomically inside Valkey/Redis, so
// reading the record, judging it by the server's own clock (TIME) and writing
// it back is one indivisible step: no client clock, no read-then-write race.
// They mirror @idem/core's decideClaim / decideFinish case by case.
//
// KEYS[1] is the record, KEYS[2] the fence counter; both carry the same
// {hash tag}, so they live in one cluster slot. Only redis.call/pcall are used
// (Redis 7.0 has no server.call).

/** Helpers shared by both scripts: server time, a strict parse (as core's parseRecord), and encoding. */
const COMMON = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x) return type(x) == 'number' and x == math.floor(x) and math.abs(x) <= 9007199254740991 end
local function optint(x) return x == nil or int(x) end
local function optstr(x) return x == nil or type(x) == 'string' end
local STATUS = { in_flight = true, succeeded = true, failed = true }

-- raw, record, why: absent -> nil, nil, nil; unreadable -> raw?, nil, why (never overwritten)
local function load(k)
  local raw = redis.pcall('GET', k)
  if type(raw) == 'table' and raw.err then return nil, nil, raw.err end
  if not raw then return nil, nil, nil end
  local ok, r = pcall(cjson.decode, raw)
  if not ok or type(r) ~= 'table' then return raw, nil, 'not a JSON object' end
  if r.v ~= 1 then return raw, nil, 'unknown schema version' end
  local good = type(r.key) == 'string' and type(r.status) == 'string' and STATUS[r.status]
    and type(r.runId) == 'string' and int(r.fence) and int(r.attempt) and int(r.claimedAt)
    and optstr(r.fingerprint) and optstr(r.error) and optint(r.leaseExpiresAt)
    and optint(r.completedAt) and optint(r.expiresAt) and (r.status ~= 'in_flight' or int(r.leaseExpiresAt))
  if not good then return raw, nil, 'fields missing or of the wrong type' end
  return raw, r, nil
end

-- The fence counter; a foreign value there is as corrupt as one in the record.
local function counter(k)
  local c = redis.pcall('GET', k)
  if type(c) == 'table' and c.err then return nil, c.err end
  if not c then return 0, nil end
  local n = tonumber(c)
  if not int(n) then return nil, 'fence counter is not an integer' end
  return n, nil
end

-- tostring() would print 1.7e+12; integers are written digit by digit.
local function num(x) return string.format('%d', x) end
local function str(s) return cjson.encode(s) end
-- Never cjson.encode a whole record: it would rewrite the caller's result ([] as {}, 14-digit numbers).
-- result and error arrive as JSON text made by the client and are inserted as they are.
local function encode(r, result, err)
  local p = { '"v":1', '"key":' .. str(r.key), '"status":' .. str(r.status), '"runId":' .. str(r.runId),
    '"fence":' .. num(r.fence), '"attempt":' .. num(r.attempt) }
  if r.fingerprint then p[#p + 1] = '"fingerprint":' .. str(r.fingerprint) end
  p[#p + 1] = '"claimedAt":' .. num(r.claimedAt)
  if r.leaseExpiresAt then p[#p + 1] = '"leaseExpiresAt":' .. num(r.leaseExpiresAt) end
  if r.completedAt then p[#p + 1] = '"completedAt":' .. num(r.completedAt) end
  if r.expiresAt then p[#p + 1] = '"expiresAt":' .. num(r.expiresAt) end
  if result then p[#p + 1] = '"result":' .. result end
  if err then p[#p + 1] = '"error":' .. err end
  return '{' .. table.concat(p, ',') .. '}'
end

-- Writes the record with its native expiry, and the counter so that it outlives the record by marginMs.
local function store(rk, fk, body, fence, ttl, marginMs)
  redis.call('SET', rk, body, 'PX', ttl)
  redis.call('SET', fk, num(fence), 'PX', ttl + marginMs)
end
`;

/**
 * claim(KEYS: record, counter; ARGV: recordKey, runId, leaseMs, graceMs, marginMs, fingerprint|'', force '1'|'0', dedupOn)
 * -> {outcome, record JSON, previous JSON|false}; outcome: acquired | adopted | own | in_flight | completed | reuse | corrupt
 */
export const CLAIM_LUA = `${COMMON}
local rk, fk = KEYS[1], KEYS[2]
local recordKey, runId = ARGV[1], ARGV[2]
local leaseMs, graceMs, marginMs = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local fp, force, dedupOn = ARGV[6], ARGV[7] == '1', ARGV[8]

local raw, cur, why = load(rk)
if why then return { 'corrupt', why } end
local last, cwhy = counter(fk)
if cwhy then return { 'corrupt', cwhy } end
local now = now_ms()
local live = cur
if cur and cur.expiresAt and cur.expiresAt <= now then live = nil end

if live and fp ~= '' and live.fingerprint and live.fingerprint ~= fp and not force then return { 'reuse', raw } end

-- Timeline of a take:  t0 GET record + counter (above) ... decide ... SET record PX lease+grace, SET counter.
-- Nothing runs between t0 and the SETs (scripts are atomic), so of N racing claimers exactly one takes.
-- The fence continues from the counter, which outlives every record; a key with no trace at all
-- starts from the server's clock in ms, which exceeds any fence the key had before its counter expired.
local function take(outcome)
  local prev = math.max(last, cur and cur.fence or 0)
  local fence = prev > 0 and prev + 1 or now
  local rec = { key = recordKey, status = 'in_flight', runId = runId, fence = fence,
    attempt = (live and live.attempt or 0) + 1, claimedAt = now, leaseExpiresAt = now + leaseMs }
  if fp ~= '' then rec.fingerprint = fp end
  local body = encode(rec)
  store(rk, fk, body, fence, leaseMs + graceMs, marginMs)
  return { outcome, body, live and raw or false }
end

if not live then return take('acquired') end
if force then return take('adopted') end
if live.status == 'in_flight' then
  if live.leaseExpiresAt <= now then return take('adopted') end
  -- Our own live claim: a retry whose first reply was lost after the write landed.
  if live.runId == runId then return { 'own', raw } end
  return { 'in_flight', raw }
end
if live.status == 'succeeded' or dedupOn == 'any' then return { 'completed', raw } end
return take('acquired')
`;

/**
 * finish(KEYS: record, counter; ARGV: op, runId, fence, leaseMs, retentionMs, graceMs, marginMs, payload|'')
 * -> {'ok', record JSON|false} | {'lost', record JSON|false} | {'corrupt', why}
 */
export const FINISH_LUA = `${COMMON}
local rk, fk = KEYS[1], KEYS[2]
local op, runId, fence = ARGV[1], ARGV[2], tonumber(ARGV[3])
local leaseMs, retentionMs, graceMs, marginMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local payload = ARGV[8] ~= '' and ARGV[8] or nil

local raw, cur, why = load(rk)
if why then return { 'corrupt', why } end
local now = now_ms()
local gone = cur == nil or (cur.expiresAt ~= nil and cur.expiresAt <= now)
-- Releasing what is already gone leaves the key free, which is all release promises.
if gone and op == 'release' then return { 'ok', false } end
if gone then return { 'lost', false } end
if cur.fence ~= fence or cur.runId ~= runId then return { 'lost', raw } end
if cur.status ~= 'in_flight' then
  -- A repeated finish (a retry after a lost reply) of the same outcome is answered, not redone.
  if (op == 'complete' and cur.status == 'succeeded') or (op == 'fail' and cur.status == 'failed') then return { 'ok', raw } end
  return { 'lost', raw }
end

-- Timeline of every write below: t0 GET record, compare fence and runId ... write. Atomic, so a
-- takeover can only come before t0 (we answer lost) or after the write (it sees what we wrote).
-- A deadline alone never locks the owner out: only a takeover changes the fence.
if op == 'renew' then
  cur.leaseExpiresAt = now + leaseMs
  local body = encode(cur)
  store(rk, fk, body, fence, leaseMs + graceMs, marginMs)
  return { 'ok', body }
end
if op == 'release' then
  -- The record goes; the counter stays, so the next claim still gets a larger fence.
  redis.call('DEL', rk)
  redis.call('SET', fk, num(fence), 'PX', marginMs)
  return { 'ok', false }
end
cur.leaseExpiresAt = nil
cur.completedAt = now
cur.expiresAt = now + retentionMs
local body
if op == 'complete' then
  cur.status = 'succeeded'
  body = encode(cur, payload, nil)
else
  cur.status = 'failed'
  body = encode(cur, nil, payload)
end
store(rk, fk, body, fence, retentionMs, marginMs)
return { 'ok', body }
`;
