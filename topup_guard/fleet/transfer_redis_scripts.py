"""The shared transfer ledger's Lua scripts: each check-and-write runs atomically inside Redis.

Layout per primary account (the ``{account}`` hash tag of ``RedisKeys``, beside the lease):
- ``transfer-meta``    the ledger uid: random, set once; also the generation every script checks
                       (gone or changed means Redis lost its data, and with it transfers in doubt).
- ``transfer-seq``     the last transfer id.
- ``transfers``        HASH id -> JSON of the entry as of its latest applied event.
- ``transfer-doubt``   SET of ids PENDING, UNKNOWN or UNCONFIRMED: what ``begin`` checks.
- ``transfer-created`` ZSET id scored by creation wall time, for ``since``.
- ``transfer-events``  STREAM, append-only: one entry per event (a refused one marked superseded).
Every JSON value is a string or absent: nothing numeric crosses Lua's doubles.
"""

from __future__ import annotations

# KEYS: meta lease seq transfers doubt created events epoch
# ARGV: fence prefix "<epoch>|<holder>|", dry "1"/"0", despite_unconfirmed "1"/"0", created wall,
# entry JSON, account, generation.
BEGIN = """
if redis.call('GET', KEYS[1]) ~= ARGV[7] then return {'vanished'} end
local lease = redis.call('GET', KEYS[2])
if (not lease) or string.sub(lease, 1, #ARGV[1]) ~= ARGV[1] then
  return {'fenced', redis.call('GET', KEYS[8]) or '0'}
end
if ARGV[2] ~= '1' then
  for _, oid in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    local raw = redis.call('HGET', KEYS[4], oid)
    if raw then
      local o = cjson.decode(raw)
      if o.account == ARGV[6] and (o.state ~= 'unconfirmed' or ARGV[3] ~= '1') then
        return {'busy', raw}
      end
    end
  end
end
local id = tostring(redis.call('INCR', KEYS[3]))
local e = cjson.decode(ARGV[5])
e.transfer_id = id
local raw = cjson.encode(e)
redis.call('HSET', KEYS[4], id, raw)
if ARGV[2] ~= '1' then redis.call('SADD', KEYS[5], id) end
redis.call('ZADD', KEYS[6], ARGV[4], id)
redis.call('XADD', KEYS[7], '*', 'transfer', id, 'event', raw)
return {'ok', raw}
"""

# KEYS: meta epoch transfers doubt events
# ARGV: id, new state, writer epoch, patch JSON, generation.
# Fencing as the top-up ledger: the tenure that began the entry (it may have moved the money after
# losing the lease) or the current epoch (the new holder settling). Final states stay final,
# except UNCONFIRMED (a listing settles it) and SUCCEEDED gaining detail.
TRANSITION = """
if redis.call('GET', KEYS[1]) ~= ARGV[5] then return {'vanished'} end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return {'missing'} end
local e = cjson.decode(raw)
local current = redis.call('GET', KEYS[2]) or '0'
if ARGV[3] ~= e.begin_epoch and ARGV[3] ~= current then return {'fenced', current} end
local old, new = e.state, ARGV[2]
local ok = old == 'pending' or old == 'unknown'
  or (old == 'unconfirmed' and (new == 'succeeded' or new == 'failed' or new == 'unconfirmed'))
  or (old == 'succeeded' and new == 'succeeded')
local p = cjson.decode(ARGV[4])
if not ok then
  p.transfer_id = e.transfer_id
  p.superseded = 'true'
  redis.call('XADD', KEYS[5], '*', 'transfer', ARGV[1], 'event', cjson.encode(p))
  return {'kept', raw}
end
for k, v in pairs(p) do e[k] = v end
raw = cjson.encode(e)
redis.call('HSET', KEYS[3], ARGV[1], raw)
if new == 'pending' or new == 'unknown' or new == 'unconfirmed' then
  redis.call('SADD', KEYS[4], ARGV[1])
else
  redis.call('SREM', KEYS[4], ARGV[1])
end
redis.call('XADD', KEYS[5], '*', 'transfer', ARGV[1], 'event', raw)
return {'ok', raw}
"""

# KEYS: meta transfers doubt created seq
# ARGV: "doubt" | "since" (ARGV[2] = wall) | "latest" (ARGV[2] = limit) | "one" (ARGV[2] = id) |
# "all", generation. One consistent snapshot.
READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return {'vanished'} end
local ids
if ARGV[1] == 'doubt' then
  ids = redis.call('SMEMBERS', KEYS[3])
elseif ARGV[1] == 'since' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[2], '+inf')
elseif ARGV[1] == 'one' then
  ids = {ARGV[2]}
elseif ARGV[1] == 'all' then
  ids = redis.call('HKEYS', KEYS[2])
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
