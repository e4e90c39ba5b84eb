-- Drop a reservation; nothing is charged.
-- KEYS: epoch, reservation record.  ARGV: now.  Returns as settle.lua.
local err = need_epoch(KEYS[1])
if err then return err end
return finish_reservation(KEYS[2], tonumber(ARGV[1]), nil)
