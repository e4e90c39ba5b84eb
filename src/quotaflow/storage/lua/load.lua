-- Load one limit's window from the ledger (a rebuild), replacing what the bucket held.
-- KEYS: bucket.  ARGV: window seconds, key ttl, used, uid, then rolling events: t1, a1, ...
local b = KEYS[1]
local w, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('DEL', b, b .. ':e', b .. ':h', b .. ':a')
redis.call('HSET', b, 'used', ARGV[3], 'reserved', 0)
if w > 0 then
  for i = 5, #ARGV, 2 do
    redis.call('ZADD', b .. ':e', ARGV[i], string.format('%s|%s:%d', ARGV[i + 1], ARGV[4], i))
  end
end
expire(b, ttl)
return 1
