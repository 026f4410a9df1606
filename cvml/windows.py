"""Durations and time windows as people type them: `15m`, `24h`, `7d`, `2026-11-01..2026-11-30`.

    parse_duration("15m")                          # timedelta(minutes=15)
    window_of("24h", end=now)                      # the 24 hours up to now
    window_of("2026-11-01..2026-11-30")            # both days whole, in UTC

A window is half-open, [start, end): a request at `end` belongs to the next one. A date
without a time means the whole day (an end date includes its day); a time without an
offset is UTC, the time every cvml log stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from cvml.errors import ConfigError

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EXAMPLES = "e.g. 15m, 24h, 7d, or 2026-11-01..2026-11-30"


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def before(self) -> Window:
        """The window of the same length that ends where this one starts."""
        return Window(self.start - self.length, self.start)

    def label(self) -> str:
        return f"{_show(self.start)} .. {_show(self.end)}"

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `24h`, `7d`, `2w` (a number and one unit).

    Raises:
        ConfigError: anything else, or a zero duration.
    """
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise ConfigError(f"{text!r} is not a duration", hint="write a number and a unit: 30s, 15m, 24h, 7d, 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} is zero", hint="give a positive duration")
    return timedelta(seconds=seconds)


def parse_time(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO-8601 date or time; a date alone is its day's start (or, `end_of_day`, the next day's).

    Raises:
        ConfigError: not ISO 8601.
    """
    text = str(text).strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO-8601 date or time", hint=_EXAMPLES) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def is_range(text: str) -> bool:
    return ".." in str(text)


def window_of(text: str, end: datetime | None = None) -> Window:
    """A window from a duration (ending at `end`, default now) or an explicit `START..END`.

    Raises:
        ConfigError: neither form, or a range that ends before it starts.
    """
    if is_range(text):
        first, _, last = str(text).partition("..")
        window = Window(parse_time(first), parse_time(last, end_of_day=True))
        if window.end <= window.start:
            raise ConfigError(f"window {text!r} ends before it starts", hint="write START..END, the earlier first")
        return window
    stop = end or datetime.now(timezone.utc)
    return Window(stop - parse_duration(text), stop)


def check_window(text: str) -> str:
    """`text` when it parses as a duration or a range (for recipe validators)."""
    window_of(text, datetime(2000, 1, 1, tzinfo=timezone.utc))
    return text


def _show(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") + " UTC"
