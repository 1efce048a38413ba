"""The shared ledger's Lua scripts: each check-and-write runs atomically inside Redis.

Layout per account (all keys share the ``{account}`` hash tag, see ``RedisKeys``):
- ``events``      STREAM, append-only: one entry per event (``attempt``, ``event`` = JSON).
                  The audit trail; nothing ever trims or deletes it.
- ``attempts``    HASH attempt id -> JSON of the attempt as of its latest applied event.
- ``open``        SET of unresolved attempt ids (PENDING or UNKNOWN): what ``begin`` refuses on.
- ``created``     ZSET attempt id scored by creation wall time, for ``since``.
- ``attempt-seq`` the last attempt id; ``meta`` holds the ledger's generation (random, set once).

Every value in the JSON is a string or null (Decimals and wall times as their exact string
forms): Lua numbers are doubles and cjson prints 14 digits, so nothing numeric crosses it.
Every script first checks ``meta`` against the generation the calling guard saw at its start
(passed as the last ARGV): if it vanished or changed, Redis lost its data (restarted without
persistence, flushed) and with it any unresolved attempt, so writes and reads refuse loudly.
"""

from __future__ import annotations

# KEYS: meta lease attempt-seq attempts open created events epoch
# ARGV: fence prefix "<epoch>|<holder>|", mode ("0" busy on any open attempt, "1" dry run: never
# busy, "2" despite doubt: busy only on a PENDING one), created wall, attempt JSON, generation.
BEGIN = """
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return {'vanished'} end
local lease = redis.call('GET', KEYS[2])
if (not lease) or string.sub(lease, 1, #ARGV[1]) ~= ARGV[1] then
  return {'fenced', redis.call('GET', KEYS[8]) or '0'}
end
if ARGV[2] ~= '1' then
  for _, oid in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    local raw = redis.call('HGET', KEYS[4], oid) or ''
    if ARGV[2] == '0' or raw == '' or cjson.decode(raw).state == 'pending' then
      return {'busy', raw}
    end
  end
end
local id = tostring(redis.call('INCR', KEYS[3]))
local a = cjson.decode(ARGV[4])
a.attempt_id = id
local raw = cjson.encode(a)
redis.call('HSET', KEYS[4], id, raw)
if ARGV[2] ~= '1' then redis.call('SADD', KEYS[5], id) end
redis.call('ZADD', KEYS[6], ARGV[3], id)
redis.call('XADD', KEYS[7], '*', 'attempt', id, 'event', raw)
return {'ok', raw}
"""

# KEYS: meta epoch attempts open events
# ARGV: attempt id, new state, writer epoch, "1" if the new state is unresolved, patch JSON,
# generation.
# Fencing: the writer must be the tenure that began the attempt (it may have spent the money and
# must be able to say so after losing the lease) or the current epoch (the new holder reconciling).
# A resolved attempt stays resolved, except UNCONFIRMED -> SUCCEEDED (a credit seen late is better
# evidence): two guards racing to resolve one attempt cannot turn "paid" into "not seen". The
# refused event is still appended to the stream, marked superseded, for the audit trail.
TRANSITION = """
if redis.call('GET', KEYS[1]) ~= ARGV[6] then return {'vanished'} end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return {'missing'} end
local a = cjson.decode(raw)
local current = redis.call('GET', KEYS[2]) or '0'
if ARGV[3] ~= a.begin_epoch and ARGV[3] ~= current then return {'fenced', current} end
local p = cjson.decode(ARGV[5])
local final = a.state ~= 'pending' and a.state ~= 'unknown'
-- A succeeded attempt may gain evidence (the credit seen after Vonage's "200") but stays paid.
local better = ARGV[2] == 'succeeded' and (a.state == 'unconfirmed' or a.state == 'succeeded')
if final and not better then
  p.attempt_id = a.attempt_id
  p.superseded = 'true'
  redis.call('XADD', KEYS[5], '*', 'attempt', ARGV[1], 'event', cjson.encode(p))
  return {'kept', raw}
end
for k, v in pairs(p) do a[k] = v end
raw = cjson.encode(a)
redis.call('HSET', KEYS[3], ARGV[1], raw)
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[4], ARGV[1])
else
  redis.call('SREM', KEYS[4], ARGV[1])
end
redis.call('XADD', KEYS[5], '*', 'attempt', ARGV[1], 'event', raw)
return {'ok', raw}
"""

# KEYS: meta attempts open created attempt-seq
# ARGV: "open" | "since" (ARGV[2] = wall) | "latest" (ARGV[2] = limit), generation.
# One consistent snapshot.
READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return {'vanished'} end
local ids
if ARGV[1] == 'open' then
  ids = redis.call('SMEMBERS', KEYS[3])
elseif ARGV[1] == 'since' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[2], '+inf')
else
  local last = tonumber(redis.call('GET', KEYS[5]) or '0')
  ids = {}
  for i = math.max(1, last - tonumber(ARGV[2]) + 1), last do ids[#ids + 1] = tostring(i) end
end
local out = {'ok'}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then out[#out + 1] = raw end
end
return out
"""
