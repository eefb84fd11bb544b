"""What an API request did to tasks, told to the shell with the response (for its metrics).

The node knows it from its own results (a placement stored, a duplicate, a cancel confirmed);
the shell reads this instead of the reply's JSON, so a change of the reply's wording or
formatting cannot change the counts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    queue: str
    enqueued: int = 0
    """New tasks stored (answered `scheduled`)."""
    duplicates: int = 0
    """Enqueues of a task id already known (answered `duplicate`)."""
    cancelled: int = 0
    """Waiting tasks cancelled on every holder (answered `cancelled`: a repeated DELETE of a
    cancelled task is answered so too, and counted again)."""
