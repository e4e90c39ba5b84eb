-- Commit usage that was not reserved (reported by an agent, a key-tester call).
-- KEYS: epoch, bucket 1..n.  ARGV: now, at, uid, then per bucket: window seconds, key ttl, amount.
local err = need_epoch(KEYS[1])
if err then return err end
local now, at, uid = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = 2, #KEYS do
  local b, o = KEYS[i], 3 + (i - 2) * 3
  local w, ttl, amt = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  prepare(b, now, w)
  commit(b, amt, at, now, w, uid .. ':' .. i)
  expire(b, ttl)
end
return 1
