import io
import json
import logging

import pytest

from quotaflow.clock import FrozenClock
from quotaflow.observability.logs import (
    REPEAT_WINDOW_S,
    EventLog,
    configure_logging,
    log_access,
    resolve,
)

FIELDS = {
    "request_id": "req_1",
    "agent": "two words",
    "route": 'say "hi"',
    "key": None,
    "status": 200,
    "stream": False,
    "cost_usd": 1.5e-05,
    "ms": 1.2,
    "model": "a=b\\c",
    "odd": "\u00a0",
}


@pytest.fixture
def restore_quotaflow_logger():
    root = logging.getLogger("quotaflow")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = propagate


def test_text_lines_put_fields_after_the_message(restore_quotaflow_logger):
    out = io.StringIO()
    configure_logging("info", "text", out)
    logging.getLogger("quotaflow.access").info(
        "request", extra={"fields": {"status": 200, "key": "main", "detail": "two words"}}
    )
    line = out.getvalue().strip()
    assert " INFO quotaflow.access request " in line
    assert line.endswith('status=200 key=main detail="two words"')


def test_json_lines_are_one_object_with_the_fields(restore_quotaflow_logger):
    out = io.StringIO()
    configure_logging("info", "json", out)
    logging.getLogger("quotaflow.events").warning("boom", extra={"fields": {"event": "x"}})
    record = json.loads(out.getvalue())
    assert record["level"] == "warning"
    assert record["logger"] == "quotaflow.events"
    assert record["msg"] == "boom"
    assert record["event"] == "x"


def test_the_level_filters_and_a_second_set_up_replaces_the_first(restore_quotaflow_logger):
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "text", first)
    configure_logging("warning", "text", second)
    logging.getLogger("quotaflow.access").info("hidden")
    logging.getLogger("quotaflow.x").warning("shown")
    assert first.getvalue() == ""
    assert "shown" in second.getvalue() and "hidden" not in second.getvalue()


def test_the_environment_names_the_defaults_and_bad_names_are_refused(monkeypatch):
    monkeypatch.setenv("QUOTAFLOW_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("QUOTAFLOW_LOG_FORMAT", "json")
    assert resolve(None, None) == ("debug", "json")
    assert resolve("warning", "text") == ("warning", "text")
    with pytest.raises(ValueError, match="QUOTAFLOW_LOG_LEVEL"):
        resolve("loud", None)
    with pytest.raises(ValueError, match="text, json"):
        resolve(None, "xml")


def test_an_event_prints_once_a_minute_with_the_count_of_repeats(caplog):
    clock = FrozenClock()
    events = EventLog(clock)
    caplog.set_level(logging.WARNING, logger="quotaflow.events")
    assert events.warn("key_cooling", "openai/main", "cooling", hint="wait")
    for _ in range(3):
        clock.advance(1.0)
        assert not events.warn("key_cooling", "openai/main", "cooling", hint="wait")
    assert events.warn("key_cooling", "openai/other", "cooling")  # another subject
    clock.advance(REPEAT_WINDOW_S)
    assert events.warn("key_cooling", "openai/main", "cooling", hint="wait")
    lines = [r for r in caplog.records if r.fields["subject"] == "openai/main"]
    assert len(lines) == 2
    assert "repeated" not in lines[0].fields and lines[1].fields["repeated"] == 3
    assert lines[0].fields["hint"] == "wait"


def test_clearing_an_episode_lets_the_next_one_print_at_once(caplog):
    events = EventLog(FrozenClock())
    caplog.set_level(logging.WARNING, logger="quotaflow.events")
    assert events.warn("store_unreachable", "counters", "down")
    events.clear("store_unreachable", "counters")
    assert events.warn("store_unreachable", "counters", "down")
    assert len(caplog.records) == 2


class CountingStream(io.StringIO):
    """A stream that remembers each write (what one system call would carry)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, s: str) -> int:
        self.writes.append(s)
        return super().write(s)


async def test_lines_logged_on_the_event_loop_go_out_after_its_turn_in_one_write(
    restore_quotaflow_logger,
):
    import asyncio

    out = CountingStream()
    configure_logging("info", "text", out)
    access = logging.getLogger("quotaflow.access")
    for i in range(5):  # five requests answered in the same turn of the loop
        access.info("request", extra={"fields": {"status": 200, "n": i}})
    # Nothing is formatted nor written while the turn (the responses' writes) is under way…
    assert out.writes == []
    await asyncio.sleep(0)
    # …then one write carries the five whole lines, in order.
    assert len(out.writes) == 1
    lines = out.getvalue().splitlines()
    assert [line.rsplit("n=", 1)[1] for line in lines] == ["0", "1", "2", "3", "4"]
    assert all(" INFO quotaflow.access request status=200 " in line for line in lines)


def test_lines_logged_without_an_event_loop_are_written_at_once(restore_quotaflow_logger):
    out = CountingStream()
    configure_logging("info", "text", out)
    logging.getLogger("quotaflow.events").warning("boom")
    assert len(out.writes) == 1 and out.getvalue().endswith("boom\n")


def test_lines_held_when_a_loop_stops_are_written_by_the_next_one_or_at_exit(
    restore_quotaflow_logger,
):
    import asyncio

    out = CountingStream()
    handler = configure_logging("info", "text", out)
    log = logging.getLogger("quotaflow.access")

    async def one(n: int) -> None:
        log.info("request", extra={"fields": {"n": n}})

    loop = asyncio.new_event_loop()
    loop.run_until_complete(one(1))  # the loop stops before its next turn
    loop.close()
    asyncio.run(one(2))
    assert [line.rsplit("n=", 1)[1] for line in out.getvalue().splitlines()] == ["1", "2"]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(one(3))
    loop.close()
    handler.flush()  # what logging does at exit
    assert out.getvalue().splitlines()[-1].endswith("n=3")


def _strip_time(line: str, fmt: str) -> str:
    if fmt == "json":
        record = json.loads(line)
        record.pop("ts")
        return json.dumps(record, sort_keys=True)
    return line.split(" ", 1)[1]  # the timestamp differs by when each line was made


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_short_way_for_the_access_line_writes_what_the_logging_module_would(
    restore_quotaflow_logger, fmt
):
    out = io.StringIO()
    configure_logging("info", fmt, out)
    access = logging.getLogger("quotaflow.access")
    access.info("request", extra={"fields": FIELDS})
    log_access(access, "request", FIELDS)
    long_way, short_way = out.getvalue().splitlines()
    assert _strip_time(short_way, fmt) == _strip_time(long_way, fmt)
    if fmt == "text":
        assert short_way.endswith(
            'agent="two words" route="say \\"hi\\"" key=- status=200 stream=False '
            'cost_usd=1.5e-05 ms=1.2 model="a=b\\\\c" odd="\u00a0"'
        )


def test_the_access_line_reaches_a_handler_someone_else_added(restore_quotaflow_logger):
    """The short way is taken only when the server's handler alone would see the line."""
    out, theirs = io.StringIO(), io.StringIO()
    configure_logging("info", "text", out)
    access = logging.getLogger("quotaflow.access")
    mine = logging.StreamHandler(theirs)
    access.addHandler(mine)
    try:
        log_access(access, "request", {"status": 200})
    finally:
        access.removeHandler(mine)
    assert theirs.getvalue() == "request\n"
    assert out.getvalue().endswith("request status=200\n")
    configure_logging("warning", "text", out)
    log_access(access, "request", {"status": 500})
    assert "status=500" not in out.getvalue()
