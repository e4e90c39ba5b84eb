-- Forget the committed usage of the current windows; reservations stay.
-- KEYS: epoch, bucket 1..n.  ARGV: now, then per bucket: window seconds.
local err = need_epoch(KEYS[1])
if err then return err end
local now = tonumber(ARGV[1])
for i = 2, #KEYS do
  local b = KEYS[i]
  prepare(b, now, tonumber(ARGV[i]))
  redis.call('HSET', b, 'used', 0)
  redis.call('DEL', b .. ':e')
end
return 1
