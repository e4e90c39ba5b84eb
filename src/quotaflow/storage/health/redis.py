"""Key health shared through Redis; the merge rule is in :mod:`.base`.

Keys::

    <prefix>health:<key id>   hash: disabled_reason, cooldown_until, cooldown_reason,
                              depleted_until, circuit, open_count, enable_gen, replenish_gen
    <prefix>health:keys       set of the key ids that have such a hash
    <prefix>health:version    bumped on every change: replicas poll it and re-read on change

Each write is one Lua script (stricter wins, atomically), so two replicas failing on the
same key at once cannot undo each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from quotaflow.storage.health.base import ResetKind

_PUBLISH = """
local h = KEYS[1]
local cur = redis.call('HMGET', h, 'disabled_reason', 'cooldown_until', 'depleted_until', 'open_count')
if ARGV[1] ~= '' and not cur[1] then redis.call('HSET', h, 'disabled_reason', ARGV[1]) end
if ARGV[2] ~= '' and tonumber(ARGV[2]) > (tonumber(cur[2]) or 0) then
  redis.call('HSET', h, 'cooldown_until', ARGV[2], 'cooldown_reason', ARGV[3])
end
if ARGV[4] ~= '' and ((not cur[3]) or tonumber(ARGV[4]) > tonumber(cur[3])) then
  redis.call('HSET', h, 'depleted_until', ARGV[4])
end
if ARGV[5] == 'open' and tonumber(ARGV[6]) > (tonumber(cur[4]) or 0) then
  redis.call('HSET', h, 'circuit', 'open', 'open_count', ARGV[6])
end
redis.call('SADD', KEYS[2], ARGV[7])
return redis.call('INCR', KEYS[3])
"""

_RESET = """
local h = KEYS[1]
if ARGV[1] == 'enable' then
  redis.call('HDEL', h, 'disabled_reason', 'cooldown_until', 'cooldown_reason',
             'depleted_until', 'circuit', 'open_count')
else
  redis.call('HDEL', h, 'depleted_until')
end
local gen = redis.call('HINCRBY', h, ARGV[1] .. '_gen', 1)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
return gen
"""


class RedisHealthStore:
    """:class:`~quotaflow.storage.health.base.HealthStore` in Redis, with its own small pool."""

    def __init__(self, url: str, *, prefix: str = "qf:", timeout_s: float = 2.0) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self.prefix = prefix
        self._set = f"{prefix}health:keys"
        self._version = f"{prefix}health:version"
        self._publish = self._redis.register_script(_PUBLISH)
        self._reset = self._redis.register_script(_RESET)

    def _hash(self, key_id: str) -> str:
        return f"{self.prefix}health:{key_id}"

    def _keys(self, key_id: str) -> list[str]:
        return [self._hash(key_id), self._set, self._version]

    async def publish(self, key_id: str, fields: Mapping[str, str]) -> None:
        args = [
            fields.get(n, "")
            for n in ("disabled_reason", "cooldown_until", "cooldown_reason", "depleted_until")
        ]
        args += [fields.get("circuit", ""), fields.get("open_count", "") or "0", key_id]
        await self._publish(keys=self._keys(key_id), args=args)

    async def reset(self, key_id: str, kind: ResetKind) -> int:
        return int(await self._reset(keys=self._keys(key_id), args=[kind, key_id]))

    async def changes(self, since: int | None) -> tuple[int, dict[str, dict[str, str]]] | None:
        raw = await self._redis.get(self._version)
        version = int(raw or 0)
        if version == since:
            return None
        ids = sorted(str(k) for k in await self._redis.smembers(self._set))
        pipe = self._redis.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self._hash(key_id))
        states: list[Any] = await pipe.execute()
        return version, {k: dict(s) for k, s in zip(ids, states, strict=True)}

    async def close(self) -> None:
        await self._redis.aclose()
