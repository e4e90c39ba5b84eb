-- Load one limit's window from the ledger, replacing what the bucket held.
-- KEYS: bucket, epoch.  ARGV: window seconds, key ttl, used, uid, only-if-absent (0|1),
--       then rolling events: t1, a1, ...
-- With only-if-absent, nothing happens when the bucket exists (it is live: other replicas
-- book into it) or when the counters are not loaded (a full reload will cover it).
local b = KEYS[1]
local w, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[5] == '1' then
  if redis.call('EXISTS', b) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
end
redis.call('DEL', b, b .. ':e', b .. ':h', b .. ':a')
redis.call('HSET', b, 'used', ARGV[3], 'reserved', 0)
if w > 0 then
  for i = 6, #ARGV, 2 do
    redis.call('ZADD', b .. ':e', ARGV[i], string.format('%s|%s:%d', ARGV[i + 1], ARGV[4], i))
  end
end
expire(b, ttl)
return 1
