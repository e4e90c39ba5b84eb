-- Reserve every claim or none.
-- KEYS: epoch, reservation record, bucket 1..n
-- ARGV: now, hold expiry, mode, record ttl, reservation id,
--       then per bucket: window seconds (0: calendar/once), key ttl (0: none), amount, cap, metric
-- Returns {1|0, used1, reserved1, first1, ...}: the usage each limit had before booking.
local err = need_epoch(KEYS[1])
if err then return err end
local now, exp, mode, rttl, rid = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n = #KEYS - 2
local out = {1}
local fits = true
for i = 1, n do
  local b, o = KEYS[i + 2], 5 + (i - 1) * 5
  local w, amt, cap = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  prepare(b, now, w)
  local u, r, first = usage(b, w)
  if u + r + amt > cap + 1e-9 then fits = false end
  out[#out + 1] = string.format('%.17g', u)
  out[#out + 1] = string.format('%.17g', r)
  out[#out + 1] = string.format('%.17g', first)
end
if not fits then
  out[1] = 0
  return out
end
local rec = {'rid', rid, 'at', ARGV[1], 'mode', mode, 'n', n}
for i = 1, n do
  local b, o = KEYS[i + 2], 5 + (i - 1) * 5
  local w, ttl, amt = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  add_reserved(b, amt)
  redis.call('ZADD', b .. ':h', exp, rid)
  redis.call('HSET', b .. ':a', rid, string.format('%.17g|%s|%s', amt, ARGV[1], mode))
  expire(b, ttl)
  for _, kv in ipairs({{'b', b}, {'x', ARGV[o + 3]}, {'w', ARGV[o + 1]}, {'t', ARGV[o + 2]},
                       {'m', ARGV[o + 5]}}) do
    rec[#rec + 1] = kv[1] .. i
    rec[#rec + 1] = kv[2]
  end
end
redis.call('HSET', KEYS[2], unpack(rec))
redis.call('EXPIRE', KEYS[2], rttl)
return out
