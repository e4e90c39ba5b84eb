"""The fault suite: hostile upstreams, hostile clients, full disks, signals and two replicas,
each through real server processes. Fixtures come from the end-to-end suite."""

from __future__ import annotations

from tests.e2e.conftest import fake, fresh_fake, home
from tests.scale.conftest import pg_dsn, redis_url_prefix

__all__ = ["fake", "fresh_fake", "home", "pg_dsn", "redis_url_prefix"]
