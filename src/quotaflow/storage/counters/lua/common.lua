-- Helpers prepended to every quotaflow counter script (see storage/redis.py).
--
-- A bucket is one limit's current window: a hash B {used, reserved}; its holds live in
-- B..':h' (zset: reservation id -> expiry) and B..':a' (hash: id -> "amount|at|mode");
-- a rolling window also keeps its events in B..':e' (zset: time -> "amount|uid").
-- Hold modes: 'c' (made by a proxied request: if its replica dies, the hold is charged at
-- its worst case when it expires, as the ledger charges the crashed row) and 'r' (made with
-- an explicit ttl, e.g. /api/choose: dropped when it expires).

local function num(x)
  return tonumber(x) or 0
end

local function need_epoch(key)
  if redis.call('EXISTS', key) == 0 then
    return redis.error_reply('QF_NOINIT counters are not loaded from the ledger')
  end
  return nil
end

local function commit(b, amt, at, now, w, uid)
  if amt <= 0 then return end
  if w > 0 then
    if at > now - w then
      redis.call('ZADD', b .. ':e', at, string.format('%.17g|%s', amt, uid))
      redis.call('HINCRBYFLOAT', b, 'used', amt)
    end
  else
    redis.call('HINCRBYFLOAT', b, 'used', amt)
  end
end

-- Rolling window: forget the events at or before now - w.
local function roll(b, now, w)
  if w <= 0 then return end
  local ez = b .. ':e'
  local edge = now - w
  local old = redis.call('ZRANGEBYSCORE', ez, '-inf', edge)
  if #old == 0 then return end
  local s = 0
  for _, m in ipairs(old) do
    s = s + tonumber(string.match(m, '^([^|]+)'))
  end
  redis.call('ZREMRANGEBYSCORE', ez, '-inf', edge)
  if redis.call('ZCARD', ez) == 0 then
    redis.call('HSET', b, 'used', 0)
  else
    redis.call('HINCRBYFLOAT', b, 'used', -s)
  end
end

local function add_reserved(b, delta)
  local r = num(redis.call('HGET', b, 'reserved')) + delta
  if r < 1e-9 then r = 0 end
  redis.call('HSET', b, 'reserved', string.format('%.17g', r))
end

-- Expired holds: mode 'c' is charged at its worst case, mode 'r' dropped.
local function sweep(b, now, w)
  local hz = b .. ':h'
  local ex = redis.call('ZRANGEBYSCORE', hz, '-inf', now)
  if #ex == 0 then return end
  local ha = b .. ':a'
  local freed = 0
  for _, rid in ipairs(ex) do
    local v = redis.call('HGET', ha, rid)
    if v then
      local amt, at, mode = string.match(v, '^([^|]+)|([^|]+)|(%a)$')
      amt = tonumber(amt)
      freed = freed + amt
      if mode == 'c' then
        commit(b, amt, tonumber(at), now, w, rid)
      end
      redis.call('HDEL', ha, rid)
    end
  end
  redis.call('ZREMRANGEBYSCORE', hz, '-inf', now)
  add_reserved(b, -freed)
end

local function prepare(b, now, w)
  roll(b, now, w)
  sweep(b, now, w)
end

-- used, reserved, first rolling event time (-1: none)
local function usage(b, w)
  local u = redis.call('HMGET', b, 'used', 'reserved')
  local first = -1
  if w > 0 then
    local f = redis.call('ZRANGE', b .. ':e', 0, 0, 'WITHSCORES')
    if #f > 0 then first = tonumber(f[2]) end
  end
  return num(u[1]), num(u[2]), first
end

local function expire(b, ttl)
  if ttl > 0 then
    redis.call('EXPIRE', b, ttl)
    redis.call('EXPIRE', b .. ':h', ttl)
    redis.call('EXPIRE', b .. ':a', ttl)
    redis.call('EXPIRE', b .. ':e', ttl)
  end
end

-- Close one hold of a reservation record: settle `actual` (or release when actual is nil).
local function close_hold(b, rid, held, at, mode, w, ttl, actual, now)
  prepare(b, now, w)
  if redis.call('ZSCORE', b .. ':h', rid) then
    redis.call('ZREM', b .. ':h', rid)
    redis.call('HDEL', b .. ':a', rid)
    add_reserved(b, -held)
    if actual and (w > 0 or redis.call('EXISTS', b) == 1) then
      commit(b, actual, at, now, w, rid)
    end
  elseif mode == 'c' then
    -- The hold expired and was charged at its worst case: put the truth in its place.
    if w > 0 then
      local member = string.format('%.17g|%s', held, rid)
      if redis.call('ZSCORE', b .. ':e', member) then
        redis.call('ZREM', b .. ':e', member)
        redis.call('HINCRBYFLOAT', b, 'used', -held)
      end
      if actual then commit(b, actual, at, now, w, rid) end
    elseif redis.call('EXISTS', b) == 1 then
      local u = num(redis.call('HGET', b, 'used')) - held + (actual or 0)
      if u < 1e-9 then u = 0 end
      redis.call('HSET', b, 'used', string.format('%.17g', u))
    end
  end
  if w > 0 then expire(b, ttl) end
end

-- Settle or release the reservation record KEYS[2] (ARGV: now, then tokens/requests/cost
-- for a settle). Returns {1, bucket1, used1, reserved1, first1, ...}: each bucket's usage
-- once closed (the replica keeps it as its recent view), or {0} when the reservation is
-- unknown.
local function finish_reservation(rec, now, measure)
  local f = redis.call('HGETALL', rec)
  if #f == 0 then return {0} end
  local r = {}
  for i = 1, #f, 2 do r[f[i]] = f[i + 1] end
  local rid, at, mode, n = r.rid, tonumber(r.at), r.mode, tonumber(r.n)
  local out = {1}
  for i = 1, n do
    local actual = nil
    if measure then actual = measure[r['m' .. i]] or 0 end
    local b, w = r['b' .. i], tonumber(r['w' .. i])
    close_hold(b, rid, tonumber(r['x' .. i]), at, mode, w, tonumber(r['t' .. i]), actual, now)
    local u, res, first = usage(b, w)
    out[#out + 1] = b
    out[#out + 1] = string.format('%.17g', u)
    out[#out + 1] = string.format('%.17g', res)
    out[#out + 1] = string.format('%.17g', first)
  end
  redis.call('DEL', rec)
  return out
end
