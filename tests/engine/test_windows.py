"""Calendar and rolling windows: parsing, starts and resets in UTC and in zones with DST."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotaflow.engine.windows import Window, next_reset, parse_window, window_start

UTC_TZ = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
SANTIAGO = ZoneInfo("America/Santiago")
HAVANA = ZoneInfo("America/Havana")
KOLKATA = ZoneInfo("Asia/Kolkata")

MINUTE, HOUR, DAY, MONTH, ONCE = (Window(k) for k in ("minute", "hour", "day", "month", "once"))


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> float:
    """Epoch seconds of a local wall time in ``tz``."""
    return datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).timestamp()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def local(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat()


# -- parse_window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("minute", Window("minute")),
        ("min", Window("minute")),
        ("hour", Window("hour")),
        ("hourly", Window("hour")),
        ("day", Window("day")),
        ("daily", Window("day")),
        ("  Daily ", Window("day")),
        ("month", Window("month")),
        ("MONTHLY", Window("month")),
        ("once", Window("once")),
        ("lifetime", Window("once")),
        ("rolling 90s", Window("rolling", 90.0)),
        ("rolling 90", Window("rolling", 90.0)),
        ("rolling:5m", Window("rolling", 300.0)),
        ("rolling_2h", Window("rolling", 7200.0)),
        ("rolling-1d", Window("rolling", 86400.0)),
        ("rolling 1.5 m", Window("rolling", 90.0)),
        ("rolling90s", Window("rolling", 90.0)),
    ],
)
def test_parse_window_accepts_every_documented_form(text: str, expected: Window) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    "text", ["fortnight", "", "rolling", "rolling x5s", "rolling 5w", "weekly", "rolling 5 s x"]
)
def test_parse_window_rejects_unknown_forms_listing_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError, match="use minute, hour, day, month, once or 'rolling N s'"):
        parse_window(text)


@pytest.mark.parametrize("text", ["rolling 0s", "rolling 0", "rolling 0.0m"])
def test_parse_window_rejects_an_empty_rolling_window(text: str) -> None:
    with pytest.raises(ValueError, match="positive length"):
        parse_window(text)


def test_window_str_round_trips_through_parse() -> None:
    for text in ("minute", "hour", "day", "month", "once", "rolling 90s", "rolling 1.5m"):
        w = parse_window(text)
        assert parse_window(str(w)) == w
    assert str(parse_window("rolling:5m")) == "rolling 300s"


@given(seconds=st.integers(1, 10**9) | st.integers(1, 10**7).map(lambda ms: ms / 1000))
def test_rolling_window_text_round_trips_exactly(seconds: float) -> None:
    """The text is part of a limit's id: two different windows must never print alike."""
    w = Window("rolling", float(seconds))
    assert parse_window(str(w)) == w


def test_rate_windows_are_the_short_ones() -> None:
    assert parse_window("minute").is_rate
    assert parse_window("hour").is_rate
    assert parse_window("rolling 3600s").is_rate
    assert not parse_window("rolling 3601s").is_rate
    assert not parse_window("day").is_rate
    assert not parse_window("month").is_rate
    assert not parse_window("once").is_rate


# -- fixed examples ----------------------------------------------------------------------------


def test_minute_window_in_utc() -> None:
    now = utc(2026, 3, 14, 12, 34, 56) + 0.25
    assert window_start(now, MINUTE, UTC_TZ) == utc(2026, 3, 14, 12, 34)
    assert next_reset(now, MINUTE, UTC_TZ) == utc(2026, 3, 14, 12, 35)


def test_hour_window_in_utc_and_in_a_half_hour_zone() -> None:
    now = utc(2026, 3, 14, 12, 10)
    assert window_start(now, HOUR, UTC_TZ) == utc(2026, 3, 14, 12)
    assert next_reset(now, HOUR, UTC_TZ) == utc(2026, 3, 14, 13)
    # Kolkata is +05:30: 12:10Z is 17:40 local, whose hour began at 17:00 local = 11:30Z.
    assert window_start(now, HOUR, KOLKATA) == utc(2026, 3, 14, 11, 30)
    assert next_reset(now, HOUR, KOLKATA) == utc(2026, 3, 14, 12, 30)


def test_kolkata_minute_and_day_windows() -> None:
    now = utc(2026, 3, 14, 20, 0, 30)  # 01:30:30 on the 15th in Kolkata
    assert window_start(now, MINUTE, KOLKATA) == utc(2026, 3, 14, 20, 0)
    assert window_start(now, DAY, KOLKATA) == utc(2026, 3, 14, 18, 30)
    assert next_reset(now, DAY, KOLKATA) == utc(2026, 3, 15, 18, 30)


def test_day_window_starts_at_local_midnight() -> None:
    now = utc(2026, 3, 14, 3)  # 23:00 EDT (-4) on the 13th in New York
    assert window_start(now, DAY, UTC_TZ) == utc(2026, 3, 14)
    assert window_start(now, DAY, NEW_YORK) == utc(2026, 3, 13, 4)
    assert next_reset(now, DAY, NEW_YORK) == utc(2026, 3, 14, 4)


def test_new_york_spring_forward_day_is_23_hours() -> None:
    now = at(NEW_YORK, 2026, 3, 8, 12)
    start, end = window_start(now, DAY, NEW_YORK), next_reset(now, DAY, NEW_YORK)
    assert start == utc(2026, 3, 8, 5)  # midnight EST
    assert end == utc(2026, 3, 9, 4)  # midnight EDT
    assert end is not None and end - start == 23 * 3600
    # The instant just before 02:00 EST is followed by 03:00 EDT: one hour window ends there.
    before_gap = utc(2026, 3, 8, 6, 59)
    assert next_reset(before_gap, HOUR, NEW_YORK) == utc(2026, 3, 8, 7)
    assert local(utc(2026, 3, 8, 7), NEW_YORK) == "2026-03-08T03:00:00-04:00"


def test_new_york_fall_back_day_is_25_hours_and_its_repeated_hour_is_two_windows() -> None:
    now = at(NEW_YORK, 2026, 11, 1, 12)
    start, end = window_start(now, DAY, NEW_YORK), next_reset(now, DAY, NEW_YORK)
    assert start == utc(2026, 11, 1, 4)  # midnight EDT
    assert end == utc(2026, 11, 2, 5)  # midnight EST
    assert end is not None and end - start == 25 * 3600
    first = at(NEW_YORK, 2026, 11, 1, 1, 30, fold=0)  # 01:30 EDT
    second = at(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)  # 01:30 EST, an hour later
    assert second - first == 3600
    assert window_start(first, HOUR, NEW_YORK) == utc(2026, 11, 1, 5)
    assert next_reset(first, HOUR, NEW_YORK) == utc(2026, 11, 1, 6)
    assert window_start(second, HOUR, NEW_YORK) == utc(2026, 11, 1, 6)
    assert next_reset(second, HOUR, NEW_YORK) == utc(2026, 11, 1, 7)
    # Both 01:30s are the same day.
    assert window_start(first, DAY, NEW_YORK) == window_start(second, DAY, NEW_YORK) == start


def test_paris_dst_days_and_month() -> None:
    spring = at(PARIS, 2026, 3, 29, 12)
    assert next_reset(spring, DAY, PARIS) - window_start(spring, DAY, PARIS) == 23 * 3600  # type: ignore[operator]
    autumn = at(PARIS, 2026, 10, 25, 12)
    assert next_reset(autumn, DAY, PARIS) - window_start(autumn, DAY, PARIS) == 25 * 3600  # type: ignore[operator]
    # March in Paris starts in CET (+1) and ends in CEST (+2): 31 days minus one hour.
    march = at(PARIS, 2026, 3, 15)
    assert window_start(march, MONTH, PARIS) == utc(2026, 2, 28, 23)
    assert next_reset(march, MONTH, PARIS) == utc(2026, 3, 31, 22)


@pytest.mark.parametrize(
    ("tz", "day", "first_instant_local"),
    [
        # Santiago springs forward at midnight: 00:00 does not exist, the day starts at 01:00.
        (SANTIAGO, (2026, 9, 6), "2026-09-06T01:00:00-03:00"),
        # Havana too, in March.
        (HAVANA, (2026, 3, 8), "2026-03-08T01:00:00-04:00"),
    ],
)
def test_a_day_whose_midnight_does_not_exist_starts_at_its_first_real_instant(
    tz: ZoneInfo, day: tuple[int, int, int], first_instant_local: str
) -> None:
    noon = at(tz, *day, 12)
    start = window_start(noon, DAY, tz)
    assert local(start, tz) == first_instant_local
    # One second earlier is still the previous day, so no instant is lost or doubled.
    assert datetime.fromtimestamp(start - 1, tz).day == day[2] - 1
    assert next_reset(start - 1, DAY, tz) == start
    assert window_start(start, DAY, tz) == start
    end = next_reset(noon, DAY, tz)
    assert end is not None and end - start == 23 * 3600


def test_havana_fall_back_at_midnight_starts_the_day_at_the_first_midnight() -> None:
    # 01:00 CDT → 00:00 CST on 2026-11-01: midnight happens twice; the day begins at the first.
    noon = at(HAVANA, 2026, 11, 1, 12)
    start = window_start(noon, DAY, HAVANA)
    assert local(start, HAVANA) == "2026-11-01T00:00:00-04:00"
    assert next_reset(noon, DAY, HAVANA) - start == 25 * 3600  # type: ignore[operator]
    second_midnight = start + 3600
    assert local(second_midnight, HAVANA) == "2026-11-01T00:00:00-05:00"
    assert window_start(second_midnight, DAY, HAVANA) == start


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (utc(2026, 1, 31, 23, 59, 59), utc(2026, 1, 1), utc(2026, 2, 1)),
        (utc(2026, 2, 1), utc(2026, 2, 1), utc(2026, 3, 1)),
        (utc(2028, 2, 29, 12), utc(2028, 2, 1), utc(2028, 3, 1)),
        (utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 1), utc(2027, 1, 1)),
        (utc(2027, 1, 1), utc(2027, 1, 1), utc(2027, 2, 1)),
    ],
)
def test_month_windows_follow_the_calendar(now: float, start: float, end: float) -> None:
    assert window_start(now, MONTH, UTC_TZ) == start
    assert next_reset(now, MONTH, UTC_TZ) == end


def test_leap_day_2028_is_its_own_day_and_february_has_29_days() -> None:
    leap = utc(2028, 2, 29, 6)
    assert window_start(leap, DAY, UTC_TZ) == utc(2028, 2, 29)
    assert next_reset(leap, DAY, UTC_TZ) == utc(2028, 3, 1)
    assert next_reset(utc(2028, 2, 28, 23), DAY, UTC_TZ) == utc(2028, 2, 29)
    feb = next_reset(leap, MONTH, UTC_TZ)
    assert feb is not None and feb - window_start(leap, MONTH, UTC_TZ) == 29 * 86400
    assert next_reset(utc(2026, 2, 10), MONTH, UTC_TZ) - utc(2026, 2, 1) == 28 * 86400  # type: ignore[operator]


def test_year_change_in_a_zone_behind_utc() -> None:
    # 03:00Z on Jan 1st is still Dec 31st in New York: December's window is the current one.
    now = utc(2027, 1, 1, 3)
    assert window_start(now, MONTH, NEW_YORK) == utc(2026, 12, 1, 5)
    assert next_reset(now, MONTH, NEW_YORK) == utc(2027, 1, 1, 5)
    assert window_start(now, DAY, NEW_YORK) == utc(2026, 12, 31, 5)


def test_once_never_resets_and_rolling_slides() -> None:
    now = utc(2026, 3, 14, 12)
    assert window_start(now, ONCE, UTC_TZ) == float("-inf")
    assert next_reset(now, ONCE, UTC_TZ) is None
    rolling = parse_window("rolling 90s")
    assert window_start(now, rolling, NEW_YORK) == now - 90
    assert next_reset(now, rolling, NEW_YORK) == now + 90


# -- properties ----------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [UTC_TZ, NEW_YORK, PARIS, SANTIAGO, HAVANA, KOLKATA, ZoneInfo("Asia/Tokyo")]
)
CALENDAR = st.sampled_from([MINUTE, HOUR, DAY, MONTH])
# 2000-01-01 … 2100-01-01, at millisecond resolution.
INSTANTS = st.integers(946_684_800_000, 4_102_444_800_000).map(lambda ms: ms / 1000)


@settings(max_examples=400, deadline=None)
@given(now=INSTANTS, window=CALENDAR, tz=ZONES)
def test_now_lies_in_its_window(now: float, window: Window, tz: ZoneInfo) -> None:
    start = window_start(now, window, tz)
    end = next_reset(now, window, tz)
    assert end is not None
    assert start <= now < end, (local(start, tz), local(now, tz), local(end, tz))


@settings(max_examples=400, deadline=None)
@given(now=INSTANTS, window=CALENDAR, tz=ZONES)
def test_windows_tile_time(now: float, window: Window, tz: ZoneInfo) -> None:
    """Every instant of a window maps to the same window, and the next one starts at its end."""
    start = window_start(now, window, tz)
    end = next_reset(now, window, tz)
    assert end is not None
    assert window_start(start, window, tz) == start
    assert next_reset(start, window, tz) == end
    assert window_start(end, window, tz) == end
    # The last instant before the end is still in this window.
    assert window_start(end - 0.001, window, tz) == start


@settings(max_examples=300, deadline=None)
@given(a=INSTANTS, b=INSTANTS, window=CALENDAR, tz=ZONES)
def test_window_start_and_reset_are_monotonic(
    a: float, b: float, window: Window, tz: ZoneInfo
) -> None:
    lo, hi = min(a, b), max(a, b)
    assert window_start(lo, window, tz) <= window_start(hi, window, tz)
    assert next_reset(lo, window, tz) <= next_reset(hi, window, tz)  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(now=INSTANTS, tz=ZONES)
def test_window_lengths_are_plausible(now: float, tz: ZoneInfo) -> None:
    def span(w: Window) -> float:
        end = next_reset(now, w, tz)
        assert end is not None
        return end - window_start(now, w, tz)

    assert span(MINUTE) == 60
    assert span(HOUR) == 3600
    assert span(DAY) in (23 * 3600, 24 * 3600, 25 * 3600)
    assert 28 * 86400 - 3600 <= span(MONTH) <= 31 * 86400 + 3600


@settings(max_examples=100, deadline=None)
@given(now=INSTANTS, seconds=st.floats(0.001, 1e7), tz=ZONES)
def test_rolling_window_is_the_last_n_seconds(now: float, seconds: float, tz: ZoneInfo) -> None:
    w = Window("rolling", seconds)
    assert window_start(now, w, tz) == now - seconds
    assert next_reset(now, w, tz) == now + seconds
