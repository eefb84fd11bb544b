"""The daemon's logging: standard `logging`, one line per record on stderr, text or JSON.

Every line starts with (or, in JSON, has) a UTC timestamp to the millisecond. Warnings repeated
by the same cause (the same logger and message template) are rate-limited: the first goes
out, the next ones within `WARNING_INTERVAL_S` are counted, and the first one after the interval
says how many were held back. What the node logs never includes a task's body or headers or a
request's query string: loggers get ids, queue names, host:port and statuses only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
WARNING_INTERVAL_S = 60.0
"""At most one warning per cause this often."""
WARNING_CAUSES_MAX = 1000
"""Causes tracked at once (bounded memory); the oldest is forgotten first."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _utc_time(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RepeatedWarningFilter(logging.Filter):
    """Lets one warning per cause through per interval; the next one says how many it held."""

    def __init__(
        self,
        *,
        interval_s: float = WARNING_INTERVAL_S,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock_s = clock_s
        self._causes: dict[tuple[str, str], tuple[float, int]] = {}
        """(logger, message template) -> (when one last went out, how many were held since)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now_s = self._clock_s()
        last = self._causes.get(key)
        if last is not None and now_s - last[0] < self._interval_s:
            self._causes[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} (and {last[1]} more like it in the last " + (
                f"{now_s - last[0]:.0f} s)"
            )
            record.args = None
        self._causes.pop(key, None)
        if len(self._causes) >= WARNING_CAUSES_MAX:
            del self._causes[next(iter(self._causes))]
        self._causes[key] = (now_s, 0)
        return True


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every `miyamoto` (and other) record at `level` or above to `stream` (stderr)."""
    assert level in LOG_LEVELS and log_format in LOG_FORMATS, (level, log_format)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    handler.addFilter(RepeatedWarningFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
