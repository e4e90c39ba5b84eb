"""Seed 002's ``UsageMonitor``: the usage report from Python, on the data folder.

    from quotaflow import UsageMonitor

    monitor = UsageMonitor()
    monitor.print_usage_report(avg_tokens_per_day=10000)
    monitor.check_alerts()
    monitor.print_compact_report()
    monitor.export_usage_report("usage_report.txt")     # .txt, .csv or .json

It only reads the ledger, so it is safe beside a running server or a :class:`~quotaflow.Gateway`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TextIO

from quotaflow.clock import Clock, SystemClock
from quotaflow.reports.collect import collect_report
from quotaflow.reports.export import export, to_text
from quotaflow.reports.usage import UsageReport
from quotaflow.runtime import ConfigSource, data_home, open_runtime, resolve_config


class UsageMonitor:
    """Reports over the data folder's ledger (config found as :class:`~quotaflow.Gateway` does)."""

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        home: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = resolve_config(config)
        self.home = data_home(home)
        self.clock = clock or SystemClock()
        self.out = out

    def report(
        self,
        avg_tokens_per_day: float | None = None,
        *,
        group_by: str = "provider",
        since: float | None = None,
        until: float | None = None,
    ) -> UsageReport:
        """The report as data (what the ``print_*`` methods print)."""

        async def main() -> UsageReport:
            async with open_runtime(self.config, self.home, clock=self.clock) as runtime:
                return await collect_report(
                    runtime.gateway,
                    now=self.clock.now(),
                    since=since,
                    until=until,
                    group_by=group_by,
                    avg_tokens_per_day=avg_tokens_per_day,
                )

        return _run(main())

    def _print(self, text: str) -> None:
        (self.out or sys.stdout).write(text)

    def print_usage_report(self, avg_tokens_per_day: float = 10_000) -> UsageReport:
        """Print the full report with each provider's lifespan at ``avg_tokens_per_day``."""
        rep = self.report(avg_tokens_per_day)
        self._print(to_text(rep, self.config.tz))
        return rep

    def print_compact_report(self) -> UsageReport:
        """Print one line per provider and the total."""
        rep = self.report()
        self._print(to_text(rep, self.config.tz, compact=True))
        return rep

    def check_alerts(self) -> list[str]:
        """Print and return the quotas at or above 75 / 90 / 95 % (the config's levels)."""
        messages = [a.message for a in self.report().alerts]
        self._print(
            "".join(f"⚠ {m}\n" for m in messages)
            or "no alerts: every quota is below its first alert level\n"
        )
        return messages

    def export_usage_report(
        self, filename: str = "usage_report.txt", avg_tokens_per_day: float | None = 10_000
    ) -> str:
        """Write the report to ``filename`` (.txt, .csv or .json); returns the file name."""
        export(self.report(avg_tokens_per_day), filename, self.config.tz)
        return filename


def _run(coro: object) -> UsageReport:
    """Run on a fresh loop, or on a helper thread when called from inside a running loop."""
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
