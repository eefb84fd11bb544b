"""Queue settings: the queues file (TOML), each queue's settings, how far a task may change them.

Pure: the shell reads the file and passes its text to `parse_queues_toml`, which raises nothing but
`QueueConfigError`, whose message names the table and key (`[queue.emails] rate ...`) and, when a
limit was exceeded, the limit. docs/queues.md is the user's page for all of it.

A task's own retry settings (`RetryOverrides`) can only narrow its queue's (`effective_retry`,
`effective_deadline_ms`): the queue's settings are the operator's promise to the destinations and
about how long a task may live, so a client cannot buy more retries, sooner retries or a longer
deadline than the queue gives.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal

from .enqueue_parse import validate_queue_name
from .errors import ClientError
from .limits import Limits
from .retry import RetryPolicy
from .task import RetryOverrides

BUCKET_SIZE_DEFAULT = 5
"""App Engine's default `bucket_size` too."""
RATE_PER_S_MIN = 1 / 86_400
"""One task a day, App Engine's slowest unit ("1/d"); slower would be a paused queue."""
MAX_DOUBLINGS_MAX = 63
"""More doublings than this cannot matter: 1 ms doubled 63 times is past any allowed backoff."""
UNLIMITED = "unlimited"
"""The value that lifts `rate` or `max_concurrent` (TOML has no null to unset an inherited one)."""

_INT64_MAX = 2**63 - 1
_KEYS = (
    "rate", "bucket_size", "max_concurrent", "retry_limit", "age_limit", "min_backoff",
    "max_backoff", "max_doublings", "delivery_deadline",
)  # fmt: skip
_DURATION = re.compile(r"(-?)([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)/(s|m|h|d)")
_RATE_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class QueueConfigError(ValueError):
    """The queues file is refused; `message` says where (table and key) and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """The settings of one queue."""

    rate_per_s: float | None = None
    """Delivery attempts started per second (a token bucket); None means unlimited."""
    bucket_size: int = BUCKET_SIZE_DEFAULT
    """Tokens the bucket holds: how many attempts may start at once after a quiet spell."""
    max_concurrent: int | None = None
    """Deliveries in flight at once; None means no cap of the queue's own."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    delivery_deadline_ms: int = 30_000
    """No complete webhook answer within this is a failed attempt (timeout)."""

    def __post_init__(self) -> None:
        rate = self.rate_per_s
        assert rate is None or (math.isfinite(rate) and rate > 0), rate
        assert self.bucket_size >= 1, self.bucket_size
        assert self.max_concurrent is None or self.max_concurrent >= 1, self.max_concurrent
        assert self.delivery_deadline_ms >= 1, self.delivery_deadline_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuesConfig:
    """The settings of every queue: the named ones, and `default` for any other."""

    default: QueueConfig = field(default_factory=QueueConfig)
    queues: tuple[tuple[str, QueueConfig], ...] = ()
    """(queue name, its settings), sorted by name; a tuple so the config stays hashable."""
    _by_name: dict[str, QueueConfig] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = dict(self.queues)
        assert len(by_name) == len(self.queues), "a queue is named twice"
        object.__setattr__(self, "queues", tuple(sorted(self.queues, key=lambda pair: pair[0])))
        object.__setattr__(self, "_by_name", by_name)

    def for_queue(self, name: str) -> QueueConfig:
        return self._by_name.get(name, self.default)


# --- a task's own settings, within its queue's --------------------------------------------------


def effective_retry(queue: QueueConfig, overrides: RetryOverrides | None) -> RetryPolicy:
    """The retry policy of a task: its own settings, narrowed to what its queue allows.

    - `retry_limit` and `age_limit` at most the queue's (-1 and 0, "no limit", are the most).
      A limit the queue does not have is ignored when the queue has the other one: retries stop
      only once both limits are passed (App Engine's rule), so adding the second limit could
      only keep a task retrying longer than its queue allows.
    - `min_backoff` from the queue's `min_backoff` to its `max_backoff`; `max_backoff` from that
      `min_backoff` to the queue's `max_backoff`: every wait is within the queue's range.
    - `max_doublings` at most the queue's.

    So `effective.may_retry(...)` implies `queue.retry.may_retry(...)` for every input.
    """
    policy = queue.retry
    if overrides is None:
        return policy
    retry_limit = _narrower_limit(overrides.retry_limit, policy.retry_limit, none=-1)
    age_limit_ms = _narrower_limit(overrides.age_limit_ms, policy.age_limit_ms, none=0)
    queue_counts, queue_ages = policy.retry_limit != -1, policy.age_limit_ms != 0
    if queue_counts and not queue_ages:
        age_limit_ms = 0
    if queue_ages and not queue_counts:
        retry_limit = -1
    min_backoff_ms = _clamp(
        _given(overrides.min_backoff_ms, policy.min_backoff_ms),
        policy.min_backoff_ms,
        policy.max_backoff_ms,
    )
    max_backoff_ms = _clamp(
        _given(overrides.max_backoff_ms, policy.max_backoff_ms),
        min_backoff_ms,
        policy.max_backoff_ms,
    )
    max_doublings = _clamp(
        _given(overrides.max_doublings, policy.max_doublings), 0, policy.max_doublings
    )
    return RetryPolicy(
        retry_limit=retry_limit,
        age_limit_ms=age_limit_ms,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
        max_doublings=max_doublings,
    )


def effective_deadline_ms(queue: QueueConfig, overrides: RetryOverrides | None) -> int:
    """A task's delivery deadline: its own `deadline`, at most its queue's (and at least 1 ms)."""
    given = None if overrides is None else overrides.deadline_ms
    return _clamp(_given(given, queue.delivery_deadline_ms), 1, queue.delivery_deadline_ms)


def _narrower_limit(task: int | None, queue: int, *, none: int) -> int:
    """The task's limit if it is at most the queue's; `none` is the value meaning no limit."""
    if task is None:
        return queue
    if task < 0 or task == none:  # a negative age limit is no limit, like -1 retries
        return queue
    return task if queue == none else min(task, queue)


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


# --- the queues file ------------------------------------------------------------------------------


def parse_queues_toml(text: str, limits: Limits) -> QueuesConfig:
    """The settings a queues file gives; see docs/queues.md for the format."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise QueueConfigError(f"not valid TOML: {error}") from None
    for key in document:
        if key not in ("defaults", "queue"):
            raise QueueConfigError(
                f"unknown table or key {_show(key)}; "
                "a queues file holds a [defaults] table and [queue.NAME] tables"
            )
    defaults_table = document.get("defaults", {})
    if not isinstance(defaults_table, dict):
        raise QueueConfigError(
            f"defaults must be a [defaults] table of settings, not {_show(defaults_table)}"
        )
    default = _queue_config(defaults_table, QueueConfig(), "[defaults]", {}, limits)
    origins = {key: "[defaults]" for key in defaults_table}
    queue_tables = document.get("queue", {})
    if not isinstance(queue_tables, dict):
        raise QueueConfigError(f"queue must be [queue.NAME] tables, not {_show(queue_tables)}")
    if len(queue_tables) > limits.queues_max:
        raise QueueConfigError(
            f"the file names {len(queue_tables)} queues; the limit is {limits.queues_max}"
        )
    queues: list[tuple[str, QueueConfig]] = []
    for name, table in sorted(queue_tables.items()):
        where = f"[queue.{_key_text(name)}]"
        try:
            validate_queue_name(name, limits)
        except ClientError as error:
            raise QueueConfigError(f"{where}: {error.message}") from None
        if not isinstance(table, dict):
            raise QueueConfigError(
                f"queue.{_key_text(name)} must be a {where} table of settings, not {_show(table)}"
            )
        queues.append((name, _queue_config(table, default, where, origins, limits)))
    return QueuesConfig(default=default, queues=tuple(queues))


def _queue_config(
    table: dict[str, object],
    base: QueueConfig,
    where: str,
    origins: dict[str, str],
    limits: Limits,
) -> QueueConfig:
    """`base` with what `table` sets; `origins` says which table set each inherited key."""
    for key in table:
        if key not in _KEYS:
            raise QueueConfigError(
                f"{where} unknown key {_show(key)}; known keys: {', '.join(_KEYS)}"
            )

    def at(key: str) -> str:
        return f"{where} {key}"

    def duration_ms(key: str, default_ms: int, high_ms: int, limit: str, why: str = "") -> int:
        if key not in table:
            return default_ms
        ms = parse_duration_ms(table[key], at(key))
        if ms > high_ms:
            raise QueueConfigError(f"{at(key)} is over {limit}; the limit is {limit}{why}")
        return ms

    retry = base.retry
    ahead_ms_max = limits.schedule_ahead_ms_max
    ahead_limit = f"{ahead_ms_max / 86_400_000:g} days"
    ahead_why = " (as far ahead as a task may be scheduled)"
    min_backoff_ms = duration_ms(
        "min_backoff", retry.min_backoff_ms, ahead_ms_max, ahead_limit, ahead_why
    )
    max_backoff_ms = duration_ms(
        "max_backoff", retry.max_backoff_ms, ahead_ms_max, ahead_limit, ahead_why
    )
    if min_backoff_ms > max_backoff_ms:

        def shown(key: str, ms: int) -> str:
            origin = "" if key in table else f", from {origins.get(key, 'the built-in default')}"
            return f"{key} ({_seconds_text(ms)}{origin})"

        raise QueueConfigError(
            f"{where} {shown('min_backoff', min_backoff_ms)} is more than "
            f"{shown('max_backoff', max_backoff_ms)}"
        )
    deadline_ms = duration_ms(
        "delivery_deadline",
        base.delivery_deadline_ms,
        limits.delivery_deadline_ms_max,
        _seconds_text(limits.delivery_deadline_ms_max),
    )
    if deadline_ms < 1:
        raise QueueConfigError(f"{at('delivery_deadline')} must be at least 1 ms")
    return QueueConfig(
        rate_per_s=_rate(table["rate"], at("rate"), limits) if "rate" in table else base.rate_per_s,
        bucket_size=(
            _integer(table["bucket_size"], at("bucket_size"), 1, limits.queue_bucket_size_max)
            if "bucket_size" in table
            else base.bucket_size
        ),
        max_concurrent=(
            _max_concurrent(table["max_concurrent"], at("max_concurrent"), limits)
            if "max_concurrent" in table
            else base.max_concurrent
        ),
        retry=RetryPolicy(
            retry_limit=(
                _integer(table["retry_limit"], at("retry_limit"), -1, _INT64_MAX)
                if "retry_limit" in table
                else retry.retry_limit
            ),
            age_limit_ms=duration_ms("age_limit", retry.age_limit_ms, _INT64_MAX, "2**63 - 1 ms"),
            min_backoff_ms=min_backoff_ms,
            max_backoff_ms=max_backoff_ms,
            max_doublings=(
                _integer(table["max_doublings"], at("max_doublings"), 0, MAX_DOUBLINGS_MAX)
                if "max_doublings" in table
                else retry.max_doublings
            ),
        ),
        delivery_deadline_ms=deadline_ms,
    )


# --- values ---------------------------------------------------------------------------------------


def parse_duration_ms(value: object, where: str) -> int:
    """A duration of the queues file in ms: a number of seconds, or a string "500ms", "30s",
    "5m", "2h", "2d" (decimals allowed: "1.5s"); rounded to the millisecond, 0 or more."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise QueueConfigError(
                f'{where} must be a number of seconds or a string such as "500ms", "30s", '
                f'"5m", "2h" or "2d", not {_show(value)}'
            )
        if match[1]:
            raise QueueConfigError(f"{where} must be 0 or more, not {_show(value)}")
        return round(Decimal(match[2]) * _DURATION_UNIT_MS[match[3]])
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueueConfigError(
            f'{where} must be a number of seconds or a string such as "30s", not {_show(value)}'
        )
    if not math.isfinite(value):
        raise QueueConfigError(f"{where} must be a finite number of seconds, not {_show(value)}")
    if value < 0:
        raise QueueConfigError(f"{where} must be 0 or more, not {_show(value)}")
    return round(Decimal(value) * 1000)


def _rate(value: object, where: str, limits: Limits) -> float | None:
    if value == UNLIMITED:
        return None
    rate_max = limits.queue_rate_per_s_max
    if isinstance(value, str) and (match := _RATE.fullmatch(value)):
        rate = float(Decimal(match[1]) / _RATE_UNIT_S[match[2]])
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # float() raises on an int past float range; any int over the limit is refused anyway
        rate = math.inf if value > rate_max else float(value)
    else:
        raise QueueConfigError(
            f'{where} must be a number of tasks per second, a string such as "10/s", "5/m", '
            f'"100/h" or "1/d", or "{UNLIMITED}"; not {_show(value)}'
        )
    if math.isnan(rate) or rate <= 0:
        raise QueueConfigError(
            f"{where} must be more than 0, not {_show(value)} (to stop a queue, pause it)"
        )
    if rate < RATE_PER_S_MIN:
        raise QueueConfigError(f'{where} is below one task a day ("1/d"), the slowest rate')
    if rate > rate_max:
        raise QueueConfigError(
            f"{where} is over {rate_max:.0f} tasks per second; the limit is {rate_max:.0f}"
        )
    return rate


def _max_concurrent(value: object, where: str, limits: Limits) -> int | None:
    if value == UNLIMITED:
        return None
    if isinstance(value, str):
        raise QueueConfigError(f'{where} must be an integer or "{UNLIMITED}", not {_show(value)}')
    return _integer(value, where, 1, limits.queue_concurrent_max)


def _integer(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueConfigError(f"{where} must be an integer, not {_show(value)}")
    if not low <= value <= high:
        raise QueueConfigError(f"{where} must be from {low} to {high}, not {_show(value)}")
    return value


def _seconds_text(ms: int) -> str:
    return f"{ms // 1000} seconds" if ms % 1000 == 0 else f"{ms / 1000} seconds"


def _key_text(name: str) -> str:
    """A TOML key as the file would spell it: bare when it can be, else a quoted string."""
    shown = name if len(name) <= 60 else name[:60] + "..."
    return shown if _BARE_KEY.fullmatch(name) else json.dumps(shown)


def _show(value: object) -> str:
    """A short rendering of a TOML value for an error message, in TOML's spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:60] + "...")
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 60 else text[:60] + "..."
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a date or time ({value})"
