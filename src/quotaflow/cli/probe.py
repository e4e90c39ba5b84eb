"""``quotaflow probe``: seed 004's key tester — every key × model, concurrently, with a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quotaflow.cli.exit_codes import EXIT_FAILED, EXIT_USAGE
from quotaflow.cli.render import console, emit_json, fail, json_option
from quotaflow.cli.target import load_config_or_exit, local_options, run_local
from quotaflow.services.probe import ProbeResult, probe_all, results_document, summarize, targets

RESULTS_FILE = "api-test-results.json"


@click.command("probe")
@local_options
@json_option
@click.option(
    "--provider", "providers", multiple=True, help="Test only this provider (repeatable)."
)
@click.option(
    "--models",
    default=None,
    help="Comma-separated model names to test (default: every model of each provider).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Seconds each test may take.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=256),
    default=8,
    show_default=True,
    help="Tests in flight at once.",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"Results file (default: <data folder>/{RESULTS_FILE}).",
)
def probe(
    config_path: str | None,
    home: str | None,
    as_json: bool,
    providers: tuple[str, ...],
    models: str | None,
    timeout_s: float,
    concurrency: int,
    output_path: str | None,
) -> None:
    """Test every key with every model of its provider: status, latency and error of each,
    then passed / failed / pass rate / fastest. Results go to a JSON file and into each key's
    health, so routing skips dead or empty keys (a failed key stays skipped until re-tested
    or enabled again).

    Writes to the data folder: run it while no server uses the folder.
    Exit 0 when every test passed, 1 when any failed, 2 on bad options.
    """
    from quotaflow.runtime import data_home

    config = load_config_or_exit(config_path)
    wanted_models = [m.strip() for m in models.split(",") if m.strip()] if models else []
    err_console = Console(stderr=True)

    async def work(runtime: Any) -> tuple[list[ProbeResult], float]:
        engine = runtime.gateway
        try:
            todo = targets(engine, providers, wanted_models)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
        if not todo:
            fail("no key to test: configure keys or add one with 'quotaflow keys add'", EXIT_USAGE)
        with Progress(
            TextColumn("testing keys"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        ) as bar:
            task = bar.add_task("probe", total=len(todo))
            results = await probe_all(
                engine,
                todo,
                timeout_s=timeout_s,
                concurrency=concurrency,
                on_result=lambda _: bar.advance(task),
            )
        return results, engine.clock.now()

    results, now = run_local(config, home, work)
    summary = summarize(results)
    doc = results_document(results, summary, now)
    path = Path(output_path) if output_path else data_home(home) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if as_json:
        emit_json({**doc, "results_file": str(path)})
    else:
        show(results, summary.to_dict(), path)
    if summary.failed:
        raise SystemExit(EXIT_FAILED)


def show(results: list[ProbeResult], summary: dict[str, Any], path: Path) -> None:
    out = console()
    t = Table(title="Key tester", title_justify="left")
    for col in ("provider", "key", "model", "status", "latency ms", "error"):
        t.add_column(col, justify="right" if col == "latency ms" else "left")
    for r in results:
        status = "[green]✅ passed[/green]" if r.ok else "[red]❌ failed[/red]"
        error = "" if r.ok else f"{r.error_kind} {r.http_status or ''}: {r.error or ''}".strip()
        t.add_row(
            r.provider, f"{r.key_id} ({r.key})", r.model, status, f"{r.latency_ms:,.0f}", error[:80]
        )
    out.print(t)
    out.print(f"Total Tests: {summary['total']}")
    out.print(f"Passed: {summary['passed']} ✅")
    out.print(f"Failed: {summary['failed']} ❌")
    out.print(f"Pass Rate: {summary['pass_rate']:.1f}%")
    f = summary["fastest"]
    if f is not None:
        out.print(
            f"⚡ Fastest: {f['provider']} - {f['model']} ({f['latency_ms']:,.0f}ms, key {f['key_id']})"
        )
    out.print(f"results written to {path}")
