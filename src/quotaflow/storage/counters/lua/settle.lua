-- Replace a reservation by what was used, in the window it was booked in.
-- KEYS: epoch, reservation record.  ARGV: now, tokens, requests, cost.
-- Returns {1, bucket, used, reserved, first, ...} (the usage left; see finish_reservation),
-- or {0} when the reservation is unknown (never made, or lost with the counters).
local err = need_epoch(KEYS[1])
if err then return err end
return finish_reservation(KEYS[2], tonumber(ARGV[1]),
  {tokens = tonumber(ARGV[2]), requests = tonumber(ARGV[3]), cost = tonumber(ARGV[4])})
