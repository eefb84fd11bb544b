"""The clients: enqueue tasks through the real HTTP API, retry, cancel, read, send junk.

Each task carries a workload key (param `w`) and a client id, so a delivery is recognised
whatever id it carries. Clients pick a node at random; when a node refuses the connection,
times out or answers 5xx, the client tries again (another node when the nodes form a cluster,
the same node when they are independent single nodes, since only that one knows the task).
Sometimes a client repeats an enqueue that worked, with the same id, as clients do when unsure.
With `id_reuse`, some enqueues race with the same enqueue sent to another node at the same
moment, and some ids are enqueued again with another payload (another workload key): either
way the cluster must keep one task per id. With `bursts`, a limited queue gets many tasks due
at one moment, so that its rate or concurrency limit holds them back.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

from miyamoto.logic.http import HttpRequest, HttpResponse

from .checkers import Checker
from .history import Order
from .world import WORKLOAD_KEY_PARAM, World

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_ACKS = ("scheduled", "duplicate")
"""Enqueue answers that say the task exists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    tasks: int = 100
    duration_ms: int = 60_000
    """Enqueues are spread over this (the safety phase)."""
    countdown_ms_max: int = 30_000
    queues: int = 3
    receivers: int = 4
    repeat_chance: float = 0.1
    """An enqueue that worked is sent again with the same id."""
    cancel_chance: float = 0.1
    get_chance: float = 0.05
    junk_chance: float = 0.02
    json_chance: float = 0.5
    eta_chance: float = 0.2
    """The task gives an absolute ETA instead of a countdown."""
    client_timeout_ms: int = 10_000
    client_tries_max: int = 4
    cluster: bool = False
    """Whether any node can take any request; if not, a task's requests go to one node."""
    bursts: tuple[str, ...] = ()
    """Queues that get `burst_tasks` tasks with one ETA, sent within a second, on top."""
    burst_tasks: int = 0
    burst_lead_ms_min: int = 2_000
    burst_lead_ms_max: int = 10_000
    """How long after the burst is sent its tasks are due."""
    id_reuse: bool = False
    race_chance: float = 0.1
    """With `id_reuse`: the enqueue is sent to another node too, 0 to 3 ms later."""
    conflict_chance: float = 0.1
    """With `id_reuse`: the id is enqueued again, within 5 s, with another payload."""
    late_tasks: int = 0
    """Tasks sent during the safety phase but due `late_eta_ms_min` to `late_eta_ms_max` after
    it ends: still pending, through the faults and the heal, when the copies are counted."""
    late_eta_ms_min: int = 35_000
    late_eta_ms_max: int = 60_000

    def __post_init__(self) -> None:
        assert self.tasks >= 0 and self.duration_ms > 0 and self.countdown_ms_max >= 0
        assert self.queues >= 1 and self.receivers >= 1 and self.client_tries_max >= 1
        assert self.burst_tasks >= 0
        assert 0 < self.burst_lead_ms_min <= self.burst_lead_ms_max


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPlan:
    key: str
    task_id: str
    queue: str
    url: str
    countdown_ms: int
    use_json: bool
    use_eta: bool
    home: str
    """The node the client sends it to first."""
    eta_ms: int | None = None
    """A fixed ETA (true time), the same whenever it is sent; None: now + countdown."""


_JUNK: tuple[tuple[str | None, bytes], ...] = (
    (FORM, b"task.url=ftp://r0.sim/hook"),
    (FORM, b"task.url=http://r0.sim/hook&task.countdown=-5"),
    (FORM, b"task.url=http://r0.sim/hook&task.countdown=nan"),
    (FORM, b"task.countdown=5"),
    (JSON, b'{"url": "http://r0.sim/hook", "countdown": '),
    (JSON, b'{"url": "http://r0.sim/hook", "id": "bad id!"}'),
    ("text/xml", b"<task/>"),
    (FORM, b"\xff\xfe"),
)
"""Malformed enqueues: each must get a 4xx and create nothing."""


class Workload:
    def __init__(
        self,
        world: World,
        checker: Checker,
        config: WorkloadConfig,
        rng: random.Random,
        late_rng: random.Random | None = None,
    ) -> None:
        self.world = world
        self.checker = checker
        self.config = config
        self.rng = rng
        self.late_rng = late_rng or random.Random(0)
        """Draws the late tasks: a stream of their own, so the others are drawn as before."""
        self.plans: dict[str, TaskPlan] = {}
        self.junk_sent = 0

    # -- planning a whole run --------------------------------------------------------------------

    def schedule(self) -> None:
        """Draw every client operation of the run now and put it on the world's agenda."""
        config, rng = self.config, self.rng
        sent: list[tuple[TaskPlan, int]] = []
        for index in range(config.tasks):
            plan = self.plan(index)
            at_ms = rng.randrange(config.duration_ms)
            sent.append((plan, at_ms))
            self.world.later(at_ms, f"client enqueue {plan.key}", partial(self.enqueue, plan))
            if rng.random() < config.repeat_chance:
                again_ms = at_ms + rng.randint(50, 5_000)
                self.world.later(again_ms, f"client repeat {plan.key}", partial(self.repeat, plan))
            if rng.random() < config.cancel_chance:
                cancel_ms = at_ms + rng.randint(1, plan.countdown_ms + 1_000)
                self.world.later(cancel_ms, f"client cancel {plan.key}", partial(self.cancel, plan))
            if rng.random() < config.get_chance:
                get_ms = at_ms + rng.randint(1, plan.countdown_ms + 1_000)
                self.world.later(get_ms, f"client get {plan.key}", partial(self.get, plan))
        junk = sum(rng.random() < config.junk_chance for _ in range(config.tasks))
        for _ in range(junk):
            self.world.later(rng.randrange(config.duration_ms), "client junk", self.junk)
        self._schedule_late()
        # Drawn after everything above, so that a run without them draws just what it did.
        if config.id_reuse:
            self._schedule_id_reuse(sent)
        for number, queue in enumerate(config.bursts):
            self._schedule_burst(queue, config.tasks + number * config.burst_tasks)

    def _schedule_id_reuse(self, sent: list[tuple[TaskPlan, int]]) -> None:
        config, rng = self.config, self.rng
        for plan, at_ms in sent:
            if rng.random() < config.race_chance and len(self.world.node_ids) > 1:
                other = rng.choice([n for n in self.world.node_ids if n != plan.home])
                self.world.later(
                    at_ms + rng.randint(0, 3), f"client race {plan.key}",
                    partial(self.enqueue, plan, other),
                )  # fmt: skip
            if rng.random() < config.conflict_chance:
                again = TaskPlan(
                    key=f"{plan.key}x",
                    task_id=plan.task_id,
                    queue=plan.queue,
                    url=f"http://r{rng.randrange(config.receivers)}.sim/hook",
                    countdown_ms=rng.randint(0, config.countdown_ms_max),
                    use_json=rng.random() < config.json_chance,
                    use_eta=rng.random() < config.eta_chance,
                    home=rng.choice(self.world.node_ids),
                )
                self.plans[again.key] = again
                self.world.later(
                    at_ms + rng.randint(0, 5_000), f"client same id {again.key}",
                    partial(self.enqueue, again),
                )  # fmt: skip

    def _schedule_late(self) -> None:
        """`late_tasks` tasks sent during the safety phase, due well after it (the heal and a
        repair period): they must keep R copies through every fault until then."""
        config, rng = self.config, self.late_rng
        for index in range(config.late_tasks):
            at_ms = rng.randrange(config.duration_ms)
            eta_ms = (
                self.world.now_ms
                + config.duration_ms
                + rng.randint(config.late_eta_ms_min, config.late_eta_ms_max)
            )
            plan = TaskPlan(
                key=f"late{index}",
                task_id=f"late-{index}",
                queue=f"q{rng.randrange(config.queues)}",
                url=f"http://r{rng.randrange(config.receivers)}.sim/hook",
                countdown_ms=eta_ms - self.world.now_ms - at_ms,
                use_json=rng.random() < config.json_chance,
                use_eta=True,
                home=rng.choice(self.world.node_ids),
                eta_ms=eta_ms,
            )
            self.plans[plan.key] = plan
            self.world.later(at_ms, f"client late {plan.key}", partial(self.enqueue, plan))

    def _schedule_burst(self, queue: str, first_index: int) -> None:
        """`burst_tasks` tasks into `queue`, all due at one moment, sent within a second."""
        config, rng = self.config, self.rng
        at_ms = rng.randrange(max(1, config.duration_ms // 2))
        eta_ms = (
            self.world.now_ms
            + at_ms
            + rng.randint(config.burst_lead_ms_min, config.burst_lead_ms_max)
        )
        for index in range(first_index, first_index + config.burst_tasks):
            plan = self.plan(index, queue=queue, eta_ms=eta_ms)
            self.world.later(
                at_ms + rng.randint(0, 1_000), f"client burst {plan.key}",
                partial(self.enqueue, plan),
            )  # fmt: skip

    def plan(
        self,
        index: int,
        *,
        home: str | None = None,
        countdown_ms: int | None = None,
        queue: str | None = None,
        eta_ms: int | None = None,
    ) -> TaskPlan:
        config, rng = self.config, self.rng
        drawn_queue = f"q{rng.randrange(config.queues)}"
        plan = TaskPlan(
            key=f"k{index}",
            task_id=f"task-{index}",
            queue=drawn_queue if queue is None else queue,
            url=f"http://r{rng.randrange(config.receivers)}.sim/hook",
            countdown_ms=(
                rng.randint(0, config.countdown_ms_max) if countdown_ms is None else countdown_ms
            ),
            use_json=rng.random() < config.json_chance,
            use_eta=rng.random() < config.eta_chance or eta_ms is not None,
            home=rng.choice(self.world.node_ids) if home is None else home,
            eta_ms=eta_ms,
        )
        self.plans[plan.key] = plan
        return plan

    # -- operations ------------------------------------------------------------------------------

    def enqueue(self, plan: TaskPlan, node: str | None = None, tries: int = 1) -> None:
        node = plan.home if node is None else node
        now = self.world.now_ms
        if tries == 1:
            self.checker.enqueues_open += 1
        eta_ms = now + plan.countdown_ms if plan.eta_ms is None else plan.eta_ms
        self.checker.enqueue_sent(
            key=plan.key, task_id=plan.task_id, queue=plan.queue, eta_ms=eta_ms
        )
        request = _enqueue_request(plan, eta_ms)

        def on_reply(response: HttpResponse | None, order: Order | None) -> None:
            del order
            status = _json_object(response).get("status")
            if response is not None and response.status == 200 and status in _ACKS:
                replicas = _json_object(response).get("replicas")
                self.checker.enqueue_acked(
                    key=plan.key,
                    node=node,
                    time_ms=self.world.now_ms,
                    replicas=replicas if isinstance(replicas, int) else None,
                    duplicate=status == "duplicate",
                    sent_ms=now,
                )
            elif _worth_retrying(response) and tries < self.config.client_tries_max:
                self.world.later(
                    self.rng.randint(100, 1_000),
                    f"client retry {plan.key}",
                    lambda: self.enqueue(plan, self._other_node(node), tries + 1),
                )
                return
            self.checker.enqueues_open -= 1

        self.world.client_send(node, request, on_reply, self.config.client_timeout_ms)

    def repeat(self, plan: TaskPlan) -> None:
        """The same enqueue again, same id: the cluster must not make a second task of it."""
        self.enqueue(plan, self._other_node(plan.home))

    def cancel(self, plan: TaskPlan) -> None:
        node = self._other_node(plan.home)
        self.checker.cancel_sent(plan.key)
        request = HttpRequest(method="DELETE", target=f"/{plan.queue}/{plan.task_id}")

        def on_reply(response: HttpResponse | None, order: Order | None) -> None:
            if response is None:
                return  # unknown: the cancel may have happened
            if response.status == 200 and _json_object(response).get("status") == "cancelled":
                assert order is not None
                self.checker.cancel_acked(key=plan.key, time_ms=self.world.now_ms, order=order)
            elif response.status in (404, 409):
                self.checker.cancel_refused(plan.key)

        self.world.client_send(node, request, on_reply, self.config.client_timeout_ms)

    def get(self, plan: TaskPlan) -> None:
        request = HttpRequest(method="GET", target=f"/{plan.queue}/{plan.task_id}")
        self.world.client_send(
            self._other_node(plan.home), request, lambda r, o: None, self.config.client_timeout_ms
        )

    def junk(self) -> None:
        content_type, body = self.rng.choice(_JUNK)
        node = self.rng.choice(self.world.node_ids)
        headers = () if content_type is None else (("content-type", content_type),)
        request = HttpRequest(method="POST", target="/q0", headers=headers, body=body)
        self.junk_sent += 1

        def on_reply(response: HttpResponse | None, order: Order | None) -> None:
            del order
            if response is not None:
                self.checker.bad_input_answered(
                    time_ms=self.world.now_ms, node=node, status=response.status,
                    what=f"enqueue {body[:60]!r}",
                )  # fmt: skip

        self.world.client_send(node, request, on_reply, self.config.client_timeout_ms)

    def _other_node(self, node: str) -> str:
        """Where a follow-up request goes: any node in a cluster, else the task's own node."""
        return self.rng.choice(self.world.node_ids) if self.config.cluster else node


def _worth_retrying(response: HttpResponse | None) -> bool:
    """No answer (refused, timed out) or a 5xx: the task may or may not exist; try again."""
    return response is None or response.status >= 500


def _enqueue_request(plan: TaskPlan, eta_ms: int) -> HttpRequest:
    when = ("eta", eta_ms) if plan.use_eta else ("countdown", plan.countdown_ms)
    when_text = f"{when[1] / 1000:.3f}"
    if plan.use_json:
        document: dict[str, object] = {
            "url": plan.url,
            when[0]: float(when_text),
            "id": plan.task_id,
            "params": {WORKLOAD_KEY_PARAM: plan.key},
        }
        body = json.dumps(document).encode()
        content_type = JSON
    else:
        fields = [
            ("task.url", plan.url),
            (f"task.{when[0]}", when_text),
            ("task.id", plan.task_id),
            (WORKLOAD_KEY_PARAM, plan.key),
        ]
        body = urlencode(fields).encode()
        content_type = FORM
    return HttpRequest(
        method="POST", target=f"/{plan.queue}", headers=(("content-type", content_type),), body=body
    )


def _json_object(response: HttpResponse | None) -> dict[str, object]:
    if response is None:
        return {}
    try:
        document = json.loads(response.body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
