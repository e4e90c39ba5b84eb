-- The usage of several limits now.
-- KEYS: epoch, bucket 1..n.  ARGV: now, then per bucket: window seconds.
-- Returns {used1, reserved1, first1, ...}.
local err = need_epoch(KEYS[1])
if err then return err end
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local b, w = KEYS[i], tonumber(ARGV[i])
  prepare(b, now, w)
  local u, r, first = usage(b, w)
  out[#out + 1] = string.format('%.17g', u)
  out[#out + 1] = string.format('%.17g', r)
  out[#out + 1] = string.format('%.17g', first)
end
return out
