"""The simulated world: real `Node` state machines, a virtual clock, a network, receivers, clients.

Everything runs in one thread. The world pops the next thing due from its agenda, feeds the
node it concerns, and carries out the node's actions: API responses travel back to clients,
deliveries go to simulated receivers (whose answer or timeout comes back later), peer messages
go into the network. Every random choice is drawn from rngs seeded by the run's seed, and every
step is written to the trace, so a seed replays exactly.

Fault primitives (crash, restart, pause, resume, partition, clog, heal) are methods here; they
record fault windows that the duplicate checker reads. Which faults happen when is decided
elsewhere (the nemesis for whole runs, hypothesis rules in the step-by-step test).
"""

from __future__ import annotations

import enum
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeAlias, assert_never
from urllib.parse import parse_qsl

from miyamoto.logic import codec
from miyamoto.logic.actions import Action, SendApiResponse, SendPeerMessage, StartDelivery
from miyamoto.logic.core import MembershipLayer
from miyamoto.logic.events import (
    ApiRequestReceived,
    DeliveryFailed,
    DeliveryResponded,
    Event,
    PeerMessageReceived,
    QueuesReconfigured,
    TimerExpired,
)
from miyamoto.logic.http import HttpRequest, HttpResponse
from miyamoto.logic.membership import Membership
from miyamoto.logic.messages import Envelope, Heartbeat
from miyamoto.logic.node import Node, NodeConfig

from . import observe
from .agenda import Agenda
from .checkers import Checker, ClusterView
from .clocks import NodeClock
from .copies import CopyLedger, scheduled_answer
from .disk import DiskGate, SimDisk
from .disk_checks import DiskChecks
from .history import MESSAGE_FAULTS_EXPLAINING, DeliveryRecord, FaultWindow, Order
from .network import LinkConditions, Network, Packet
from .partitions import Partition
from .receivers import HEALTHY, ReceiverMix, decide
from .trace import Trace, TracedRandom


class NodeFactory(Protocol):
    """How to build a node from its config, rng and clock reading (`Node` itself, or a node with
    a fixed membership, or a deliberately broken variant from sim/canaries.py); `membership`: the
    one restored from a disk."""

    def __call__(
        self,
        config: NodeConfig,
        rng: random.Random,
        now_ms: int = 0,
        *,
        membership: MembershipLayer | None = None,
    ) -> Node: ...


WORKLOAD_KEY_PARAM = "w"
"""The param every workload task carries: which workload task a delivery is, whatever its id."""

_TIMER_STEPS_PER_MS_MAX = 10_000
"""More timer steps than this for one node within one millisecond is a busy loop."""


class NodeCrashed(Exception):
    """A node raised while handling an event: the run stops with a crash failure."""

    def __init__(self, node: str, time_ms: int, event: Event | None, error: BaseException) -> None:
        self.node = node
        self.time_ms = time_ms
        doing = "sending a peer message" if event is None else f"handling {type(event).__name__}"
        self.detail = (
            f"{node} raised {type(error).__name__}: {error} while {doing}\n"
            f"{''.join(traceback.format_exception(error))}"
        )
        super().__init__(self.detail)


class NodeState(enum.Enum):
    UP = "up"
    PAUSED = "paused"
    """Alive but not running: everything sent to it waits; its timers do not fire."""
    DOWN = "down"
    """Crashed; may restart (with its memory lost)."""
    DEAD = "dead"
    """Crashed for good."""


@dataclass(slots=True, kw_only=True, eq=False)
class SimNode:
    id: str
    clock: NodeClock
    node: Node | None
    state: NodeState = NodeState.UP
    incarnation: int = 0
    held: list[Event] = field(default_factory=list)
    """Events that reached it while paused, in order."""
    timer_token: int = 0
    timer_at_ms: int | None = None
    fault: FaultWindow | None = None
    """The crash or pause it is in, if any."""
    busy_ms: int = -1
    busy_steps: int = 0
    members_known: int = -1
    """The length of the member list its node knew after its last step (-1: not read yet)."""
    disk: SimDisk | None = None
    """With disks: what survives its crashes (sim/disk.py)."""
    gate: DiskGate[HeldTurn] | None = None
    """With disks: the running process's commit gate (lost with the process)."""
    commit_end_held: bool = False
    """Its commit ended while it was paused: its turns go out when it resumes."""
    crash_in_commit: str | None = None
    """A crash armed for its next commit: "during" it (lost) or "after" it, before the turns
    it held go out (kept, and those answers and messages lost)."""

    @property
    def process(self) -> tuple[str, int]:
        return (self.id, self.incarnation)


@dataclass(slots=True, kw_only=True, eq=False)
class ClientRequest:
    """An HTTP request from a client to a node, and what to do with the answer.

    `on_reply(response, order)` gets None when the node refused the connection or the answer
    came after the client's timeout; `order` is where in the run the node answered.
    """

    id: int
    node: str
    request: HttpRequest
    sent_ms: int
    timeout_ms: int
    on_reply: Callable[[HttpResponse | None, Order | None], None]
    fed_local_ms: int | None = None
    """The node's clock when it took the request: the `created_ms` of copies it placed."""


Wire: TypeAlias = bytes | Envelope
"""What the network carries: encoded envelopes (through the real codec), or the envelopes
themselves when the world skips the codec for speed."""

# -- what the agenda holds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeTimer:
    node: SimNode
    token: int


@dataclass(frozen=True, slots=True)
class NodeInput:
    """An event for one incarnation of a node (a delivery's outcome)."""

    node: SimNode
    incarnation: int
    event: Event


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldTurn:
    """A turn waiting for its commit: its actions, when it was taken, and the member list
    length its node knew after it (its deliveries were admitted under that share)."""

    actions: list[Action]
    time_ms: int
    members: int


@dataclass(frozen=True, slots=True)
class CommitEnd:
    """A commit of one incarnation of a node reaches its disk."""

    node: SimNode
    incarnation: int


@dataclass(frozen=True, slots=True)
class ClientArrival:
    request: ClientRequest


@dataclass(frozen=True, slots=True)
class ClientReply:
    request: ClientRequest
    response: HttpResponse | None
    order: Order | None


@dataclass(frozen=True, slots=True)
class PeerArrival:
    packet: Packet[Wire]


@dataclass(frozen=True, slots=True)
class Call:
    """Run `action` then (a fault starting or ending, a client sending)."""

    label: str
    action: Callable[[], None]


Due: TypeAlias = (
    NodeTimer | NodeInput | ClientArrival | ClientReply | PeerArrival | Call | CommitEnd
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldConfig:
    seed: int
    node_ids: tuple[str, ...]
    node_config: NodeConfig
    """The template every node's config is made from (its node_id replaced)."""
    clocks: tuple[NodeClock, ...]
    links: LinkConditions
    receivers: ReceiverMix
    client_latency_ms_max: int = 5
    start_ms: int = 1_700_000_000_000
    wire_codec: bool = True
    """Send peer messages as bytes through `codec.encode` / `codec.decode`, as a real node does."""
    disks: bool = False
    """Each node has a disk (sim/disk.py) and restarts from it, as `--data-dir` does; without,
    a restarted node starts empty, as `--in-memory` does."""

    def __post_init__(self) -> None:
        assert len(self.node_ids) == len(self.clocks) >= 1
        assert len(set(self.node_ids)) == len(self.node_ids)


class World:
    def __init__(
        self, config: WorldConfig, checker: Checker, trace: Trace, node_factory: NodeFactory = Node
    ) -> None:
        self.config = config
        self.checker = checker
        self.trace = trace
        self.node_factory = node_factory
        self.agenda: Agenda[Due] = Agenda(config.start_ms)
        self.rng = TracedRandom(f"{config.seed}:world", trace)
        self.network: Network[Wire] = Network(
            TracedRandom(f"{config.seed}:network", trace),
            config.links,
            self._schedule_packet,
            self._packet_fault,
        )
        self.receivers = config.receivers
        self._client_requests_open: dict[tuple[str, int], ClientRequest] = {}
        """Requests a node got and has not answered yet, by (node, request id)."""
        self.nodes: dict[str, SimNode] = {}
        self.disk_checks = DiskChecks(checker)
        founder = config.node_ids[0]
        for node_id, clock in zip(config.node_ids, config.clocks, strict=True):
            sim_node = SimNode(
                id=node_id, clock=clock, node=None, disk=SimDisk() if config.disks else None
            )
            self.nodes[node_id] = sim_node
            self._boot(sim_node, seed_id=founder)  # the first founds the cluster, others join
        self.partition: Partition | None = None
        self._partition_fault: FaultWindow | None = None
        self._clog_faults: dict[str, FaultWindow] = {}
        self._steps = 0
        self._client_requests = 0
        self.copies = CopyLedger()
        checker.faults.node_count = len(config.node_ids)

    @property
    def now_ms(self) -> int:
        return self.agenda.now_ms

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self.config.node_ids

    def state(self, node_id: str) -> NodeState:
        return self.nodes[node_id].state

    def ids_in(self, *states: NodeState) -> list[str]:
        return [n.id for n in self.nodes.values() if n.state in states]

    # -- running ---------------------------------------------------------------------------------

    def step(self) -> bool:
        """Do the next thing due; False when nothing is left to do."""
        if not self.agenda:
            return False
        due = self.agenda.pop()
        now = self.agenda.now_ms
        match due:
            case NodeTimer(node=sim_node, token=token):
                if token == sim_node.timer_token and sim_node.state is NodeState.UP:
                    sim_node.timer_at_ms = None
                    self.trace.event(f"{now} timer {sim_node.id}")
                    self._feed(sim_node, TimerExpired())
            case NodeInput(node=sim_node, incarnation=incarnation, event=event):
                if incarnation == sim_node.incarnation:
                    self.trace.event(f"{now} input {sim_node.id} {_show_event(event)}")
                    self._deliver(sim_node, event)
            case ClientArrival(request=request):
                self._client_arrival(request)
            case ClientReply(request=request, response=response, order=order):
                late = now - request.sent_ms > request.timeout_ms
                status = "refused" if response is None else response.status
                self.trace.event(
                    f"{now} reply #{request.id} {status}{' late' if late else ''}"
                    f"{'' if response is None else ' ' + response.body[:120].decode('latin-1')}"
                )
                request.on_reply(None if late else response, None if late else order)
            case PeerArrival(packet=packet):
                if self.network.arrive(packet):
                    self._peer_arrival(packet)
            case Call(label=label, action=action):
                self.trace.event(f"{now} {label}")
                action()
            case CommitEnd(node=sim_node, incarnation=incarnation):
                if incarnation == sim_node.incarnation:
                    if sim_node.state is NodeState.PAUSED:
                        sim_node.commit_end_held = True
                    else:
                        self._commit_ended(sim_node)
            case _:
                assert_never(due)
        return True

    def run_until(self, time_ms: int) -> None:
        while (next_ms := self.agenda.next_time_ms()) is not None and next_ms <= time_ms:
            self.step()
        if time_ms > self.now_ms:
            self.agenda.advance_to(time_ms)

    def later(self, delay_ms: int, label: str, action: Callable[[], None]) -> None:
        self.agenda.after(delay_ms, Call(label=label, action=action))

    # -- clients ---------------------------------------------------------------------------------

    def client_send(
        self,
        node_id: str,
        request: HttpRequest,
        on_reply: Callable[[HttpResponse | None, Order | None], None],
        timeout_ms: int = 10_000,
    ) -> None:
        self._client_requests += 1
        client_request = ClientRequest(
            id=self._client_requests, node=node_id, request=request, sent_ms=self.now_ms,
            timeout_ms=timeout_ms, on_reply=on_reply,
        )  # fmt: skip
        self.trace.event(
            f"{self.now_ms} send #{client_request.id} {node_id} {request.method} {request.target}"
        )
        self.agenda.after(self._client_latency_ms(), ClientArrival(client_request))

    def _client_latency_ms(self) -> int:
        return self.rng.randint(1, self.config.client_latency_ms_max)

    def _client_arrival(self, request: ClientRequest) -> None:
        sim_node = self.nodes[request.node]
        self.trace.event(f"{self.now_ms} arrive #{request.id} {sim_node.id}")
        if sim_node.state in (NodeState.DOWN, NodeState.DEAD):
            self.agenda.after(self._client_latency_ms(), ClientReply(request, None, None))
            return
        self._client_requests_open[(sim_node.id, request.id)] = request
        self._deliver(sim_node, ApiRequestReceived(request_id=request.id, request=request.request))

    # -- nodes -----------------------------------------------------------------------------------

    def _boot(self, sim_node: SimNode, seed_id: str) -> None:
        config = replace(self.config.node_config, node_id=sim_node.id, seed_id=seed_id)
        rng = TracedRandom(f"{self.config.seed}:{sim_node.id}:{sim_node.incarnation}", self.trace)
        local_ms = sim_node.clock.local_ms(self.now_ms)
        if sim_node.disk is None:
            sim_node.node = self.node_factory(config, rng, local_ms)
        else:
            sim_node.node = self._boot_from_disk(sim_node, sim_node.disk, config, rng, local_ms)
        sim_node.state = NodeState.UP
        sim_node.members_known = -1
        self._note_members(sim_node, sim_node.node)
        self._arm(sim_node)

    def _boot_from_disk(
        self, sim_node: SimNode, disk: SimDisk, config: NodeConfig, rng: random.Random,
        local_ms: int,
    ) -> Node:  # fmt: skip
        """What miyamoto/io/node.py does with a data directory: the membership and the copies
        read back, the start's own state committed before the node says anything."""
        saved = disk.hard_state
        membership = None
        if saved is not None:
            membership = Membership.restored(
                saved, seed_id=config.seed_id or config.node_id, config=config.timing, rng=rng,
                now_ms=local_ms,
            )
        node = self.node_factory(config, rng, local_ms, membership=membership)
        restored = node.membership
        assert isinstance(restored, Membership), "a node with a disk needs a real membership"
        node.restore(disk.load_tasks(), disk.paused_queues(), local_ms)
        node.keep_changes()
        committed = restored.hard_state()
        if committed != saved:
            disk.hard_state = committed
        self.trace.event(
            f"{self.now_ms} boot {sim_node.id} from disk: {len(disk.tasks)} copies, "
            f"{'a member' if saved is not None else 'empty'}"
        )
        sim_node.gate = DiskGate(
            disk,
            hard_state=restored.hard_state,
            take_changes=node.take_changes,
            find_task=node.tasks.get,
            rng=TracedRandom(
                f"{self.config.seed}:{sim_node.id}:{sim_node.incarnation}:disk", self.trace
            ),
        )
        return node

    def _deliver(self, sim_node: SimNode, event: Event) -> None:
        """Give `event` to the node now, or keep it until it resumes if it is paused."""
        if sim_node.state is NodeState.UP:
            self._feed(sim_node, event)
        elif sim_node.state is NodeState.PAUSED:
            sim_node.held.append(event)

    def _feed(self, sim_node: SimNode, event: Event) -> None:
        node = sim_node.node
        assert node is not None and sim_node.state is NodeState.UP
        now = self.agenda.now_ms
        self._steps += 1
        step = self._steps
        if isinstance(event, DeliveryResponded | DeliveryFailed):
            self.checker.delivery_ended(sim_node.process, event.delivery_id, now)
        elif isinstance(event, ApiRequestReceived):
            request = self._client_requests_open[(sim_node.id, event.request_id)]
            request.fed_local_ms = sim_node.clock.local_ms(now)
        try:
            actions = node.handle(event, sim_node.clock.local_ms(now))
            node.check_invariants()  # a broken invariant is a crash, with this step's event
        except Exception as error:
            raise NodeCrashed(sim_node.id, now, event, error) from error
        gate = sim_node.gate
        if gate is not None:
            turn = HeldTurn(actions=actions, time_ms=now, members=observe.member_count(node))
            held = not gate.after_turn(turn)  # until what it (or a turn before) changed is on disk
            self._start_commit(sim_node, gate)
            if held:
                self._arm(sim_node)
                return
        # Before its actions are carried out: the deliveries it starts count against the
        # share of the member list it knows after the step (the one it admitted them under).
        self._note_members(sim_node, node)
        for index, action in enumerate(actions):
            self._carry_out(sim_node, action, (step, index))
        self._arm(sim_node)

    def _start_commit(self, sim_node: SimNode, gate: DiskGate[HeldTurn]) -> None:
        duration_ms = gate.start_commit()
        if duration_ms is None:
            return
        self.agenda.after(duration_ms, CommitEnd(sim_node, sim_node.incarnation))
        if sim_node.crash_in_commit == "during":
            sim_node.crash_in_commit = None
            at_ms = self.rng.randint(0, duration_ms - 1)
            incarnation = sim_node.incarnation
            self.later(at_ms, f"crash {sim_node.id} during a commit", lambda: (
                self.crash(sim_node.id)
                if sim_node.incarnation == incarnation and sim_node.state is NodeState.UP
                else None
            ))  # fmt: skip

    def _commit_ended(self, sim_node: SimNode) -> None:
        """The commit is on disk: the turns it held go out (one step of the node's order), and
        the next commit starts if turns wait for one."""
        gate = sim_node.gate
        assert gate is not None and sim_node.state is NodeState.UP
        released = gate.commit_ended()
        self.trace.event(f"{self.now_ms} commit {sim_node.id} ({len(released)} turns)")
        if sim_node.crash_in_commit == "after":
            sim_node.crash_in_commit = None
            self.trace.event(f"{self.now_ms} crash {sim_node.id} after a commit, before its turns")
            self.crash(sim_node.id)
            return
        self._steps += 1
        index = 0
        for turn in released:
            # The checkers see the turn as if it happened now, but with the share it was taken
            # under, and its deliveries started when they were admitted (a start moved later
            # would squeeze a rate-limited queue's spans).
            self._note_members_count(sim_node, turn.members)
            for action in turn.actions:
                self._carry_out(sim_node, action, (self._steps, index), decided_ms=turn.time_ms)
                index += 1
        self._start_commit(sim_node, gate)

    def _note_members(self, sim_node: SimNode, node: Node) -> None:
        self._note_members_count(sim_node, observe.member_count(node))

    def _note_members_count(self, sim_node: SimNode, members: int) -> None:
        if members != sim_node.members_known:
            sim_node.members_known = members
            self.checker.members_known(sim_node.process, members, self.agenda.now_ms)

    def _carry_out(
        self, sim_node: SimNode, action: Action, order: Order, decided_ms: int | None = None
    ) -> None:
        """`decided_ms`: when the node took the turn, if it was held for a commit."""
        match action:
            case SendApiResponse(request_id=request_id, response=response):
                request = self._client_requests_open.pop((sim_node.id, request_id))
                self._check_replicas(sim_node, request, response)
                self.agenda.after(self._client_latency_ms(), ClientReply(request, response, order))
            case StartDelivery():
                self._start_delivery(sim_node, action, order, decided_ms)
            case SendPeerMessage(to=to, envelope=envelope):
                if to not in self.nodes:
                    self.trace.event(f"{self.agenda.now_ms} peer {sim_node.id}>{to} unknown node")
                    return
                self._check_stamp(sim_node, envelope)
                self.disk_checks.sent(sim_node.process, to, envelope, self.agenda.now_ms)
                wire: Wire = envelope
                if self.config.wire_codec:
                    try:
                        wire = codec.encode(envelope)
                    except Exception as error:
                        now = self.agenda.now_ms
                        raise NodeCrashed(sim_node.id, now, None, error) from error
                self.network.send(self.agenda.now_ms, sim_node.id, to, wire)
            case _:
                assert_never(action)

    def _start_delivery(
        self, sim_node: SimNode, action: StartDelivery, order: Order, decided_ms: int | None
    ) -> None:
        now = self.agenda.now_ms
        request = action.request
        outcome = decide(self.rng, self.receivers, action.timeout_ms)
        task_id = next((v for k, v in request.headers if k.lower() == "x-task-id"), "")
        queue = next((v for k, v in request.headers if k.lower() == "x-task-queue"), "")
        key = _workload_key(request.body, request.target)
        self.trace.event(
            f"{now} deliver {sim_node.id} #{action.delivery_id} {task_id} {outcome.behaviour.value}"
        )
        assert sim_node.node is not None
        due_ms = observe.copy_due_ms(sim_node.node, queue, task_id)
        self.checker.delivery_started(
            DeliveryRecord(
                node=sim_node.id, time_ms=now if decided_ms is None else decided_ms,
                order=order, task_id=task_id, key=key,
                processed_status=outcome.processed_status, queue=queue,
                incarnation=sim_node.incarnation, delivery_id=action.delivery_id,
                copy_due_ms=None if due_ms is None else sim_node.clock.true_ms_at(due_ms),
                holders=observe.copy_holders(sim_node.node, queue, task_id),
                ended_ms=now + outcome.after_ms, answered_status=outcome.status,
            )
        )  # fmt: skip
        event: Event
        if outcome.status is not None:
            event = DeliveryResponded(delivery_id=action.delivery_id, status=outcome.status)
        else:
            assert outcome.error is not None
            event = DeliveryFailed(delivery_id=action.delivery_id, error=outcome.error)
        self.agenda.after(outcome.after_ms, NodeInput(sim_node, sim_node.incarnation, event))

    def _arm(self, sim_node: SimNode) -> None:
        """Schedule the node's next timer (its deadline is in its own clock)."""
        assert sim_node.node is not None
        deadline_ms = sim_node.node.next_deadline_ms()
        if deadline_ms is None:
            sim_node.timer_at_ms = None
            return
        now = self.agenda.now_ms
        at_ms = max(now, sim_node.clock.true_ms_at(deadline_ms))
        if at_ms == sim_node.timer_at_ms:
            return
        if at_ms == now:
            if sim_node.busy_ms != now:
                sim_node.busy_ms, sim_node.busy_steps = now, 0
            sim_node.busy_steps += 1
            if sim_node.busy_steps > _TIMER_STEPS_PER_MS_MAX:
                raise NodeCrashed(
                    sim_node.id, now, TimerExpired(),
                    RuntimeError(f"timer due at once {_TIMER_STEPS_PER_MS_MAX} times in 1 ms"),
                )  # fmt: skip
        sim_node.timer_token += 1
        sim_node.timer_at_ms = at_ms
        self.agenda.at(at_ms, NodeTimer(sim_node, sim_node.timer_token))

    def _check_replicas(
        self, sim_node: SimNode, request: ClientRequest, response: HttpResponse
    ) -> None:
        """A "scheduled" answer's `replicas` against the distinct nodes that really stored a
        copy placed by this enqueue (its created_ms is the coordinator's clock when it took
        the request), running or crashed since."""
        if response.status != 200 or b'"scheduled"' not in response.body:
            return
        scheduled = scheduled_answer(response.body)
        if scheduled is None or request.fed_local_ms is None:
            return
        queue, task_id, replicas = scheduled
        stored = self.copies.stored_on(self._running(), queue, task_id, request.fed_local_ms)
        self.checker.replicas_answered(
            node=sim_node.id, task_id=task_id, time_ms=self.now_ms, replicas=replicas,
            stored_on=stored, wanted=self.config.node_config.replicas,
        )  # fmt: skip

    # -- peers -----------------------------------------------------------------------------------

    def _check_stamp(self, sim_node: SimNode, envelope: Envelope) -> None:
        """Election safety and epochs, checked on what nodes send: a Heartbeat comes only from
        the leader of its term, and a changed stamp means a changed view, worth reading (views
        are not read after every step: that costs more than the rest of the simulator)."""
        now = self.agenda.now_ms
        if isinstance(envelope.message, Heartbeat):
            self.checker.leader_seen(
                cluster_id=envelope.cluster_id, term=envelope.term, node=envelope.sender,
                incarnation=envelope.incarnation, time_ms=now,
            )  # fmt: skip
        changed = self.checker.stamp_seen(
            node=envelope.sender, incarnation=envelope.incarnation,
            cluster_id=envelope.cluster_id, term=envelope.term, epoch=envelope.epoch,
            time_ms=now,
        )  # fmt: skip
        if changed and sim_node.node is not None:
            self.checker.view_read(observe.cluster_view(sim_node.node), now)

    def _schedule_packet(self, delay_ms: int, packet: Packet[Wire]) -> None:
        self.agenda.after(delay_ms, PeerArrival(packet))

    def _packet_fault(self, what: str, packet: Packet[Wire]) -> None:
        self.trace.event(f"{self.now_ms} packet {what} {packet.sender}>{packet.to} #{packet.id}")
        if what in MESSAGE_FAULTS_EXPLAINING:
            self.checker.faults.message_fault(self.now_ms, (packet.sender, packet.to))

    def _peer_arrival(self, packet: Packet[Wire]) -> None:
        sim_node = self.nodes[packet.to]
        envelope = packet.payload
        if isinstance(envelope, bytes):
            try:
                envelope = codec.decode(envelope)
            except codec.PeerProtocolError as error:  # we encoded it: the codec is wrong
                raise NodeCrashed(packet.sender, self.now_ms, None, error) from error
        self.trace.event(
            f"{self.now_ms} peer {packet.sender}>{packet.to} #{packet.id} "
            f"{_show_message(envelope.message)} t{envelope.term} e{envelope.epoch}"
        )
        if sim_node.state in (NodeState.UP, NodeState.PAUSED):
            self._deliver(sim_node, PeerMessageReceived(envelope=envelope))

    # -- faults ----------------------------------------------------------------------------------

    def crash(self, node_id: str, *, permanent: bool = False) -> None:
        """The node dies with its memory; `permanent` means it never comes back. With a disk,
        what its commits wrote survives; its commit in flight and the turns held for it do not."""
        sim_node = self.nodes[node_id]
        assert sim_node.state in (NodeState.UP, NodeState.PAUSED), sim_node.state
        assert sim_node.node is not None
        # With a disk the node comes back as the same member with its copies: nothing is lost
        # for good, and `lost_all_holders` may not excuse a loss (only a lost disk may).
        forgets = sim_node.disk is None or permanent
        if forgets and not self.keeps_quorum_without(node_id):
            self.checker.quorum_lost(self.now_ms, f"{node_id} crashed")
        lost = observe.pending_task_ids(sim_node.node)
        known = observe.known_task_ids(sim_node.node)
        self.checker.holder_crashed(sorted(lost), self.now_ms)
        self.copies.process_ended(node_id, sim_node.node)
        self.checker.process_ended(sim_node.process, self.now_ms)
        sim_node.node = None
        sim_node.gate = None
        sim_node.commit_end_held = False
        sim_node.state = NodeState.DEAD if permanent else NodeState.DOWN
        sim_node.incarnation += 1
        sim_node.held.clear()
        sim_node.timer_token += 1
        sim_node.timer_at_ms = None
        for key in [k for k in self._client_requests_open if k[0] == node_id]:
            request = self._client_requests_open.pop(key)  # its connections break
            self.agenda.after(self._client_latency_ms(), ClientReply(request, None, None))
        if sim_node.fault is not None:
            self.checker.faults.close(sim_node.fault, self.now_ms)
        kind = "permanent crash" if permanent else "crash"
        sim_node.fault = self.checker.faults.open(kind, [node_id], self.now_ms)
        self.trace.event(f"{self.now_ms} {kind} {node_id}")
        if forgets:
            self._forgotten(lost, known)

    def _forgotten(self, lost: set[str], known: set[str]) -> None:
        """Tell the checker which of these tasks no running node (nor a disk a node will come
        back from) holds pending (`lost`) or remembers at all (`known`) any more."""
        still_held: set[str] = set()
        still_known: set[str] = set()
        for other in self.nodes.values():
            if other.node is not None:
                still_held |= observe.pending_task_ids(other.node)
                still_known |= observe.known_task_ids(other.node)
            elif other.disk is not None and other.state is NodeState.DOWN:
                # What a disk holds comes back (pending or finished: kept apart by nobody).
                still_held |= other.disk.task_ids()
                still_known |= other.disk.task_ids()
        self.checker.holders_lost(sorted(lost - still_held), self.now_ms)
        self.checker.memory_lost(sorted(known - still_known), self.now_ms)

    def lose_disk(self, node_id: str) -> None:
        """A crashed node's disk is lost: it restarts empty under the same address (a new
        member), as a replaced machine does. Only this fault may lose tasks for good."""
        sim_node = self.nodes[node_id]
        assert sim_node.state is NodeState.DOWN and sim_node.disk is not None, sim_node.state
        had = sim_node.disk.task_ids()
        sim_node.disk.wipe()
        self.trace.event(f"{self.now_ms} disk lost {node_id}")
        if not self.keeps_quorum_without(None):
            self.checker.quorum_lost(self.now_ms, f"{node_id} lost its disk")
        self._forgotten(had, had)

    def keeps_quorum_without(self, node_id: str | None) -> bool:
        """Whether a majority of the newest acknowledged member list would still be running
        (with its memory) if `node_id` crashed now (None: as things are), and some running
        node's newest list too. Without one, the cluster can never again change its
        membership: a restarted node is a new process that only a majority can let back in."""
        running = self._running(without=node_id)
        lists = [observe.committed_members(node) for node in running.values()]
        crashing = None if node_id is None else self.nodes[node_id].node
        if crashing is not None:
            lists.append(observe.committed_members(crashing))
        if not lists:
            return False
        _, members = max(lists)
        alive = {(node_id, observe.incarnation(node)) for node_id, node in running.items()}
        for sim_node in self.nodes.values():
            saved = None if sim_node.disk is None else sim_node.disk.hard_state
            if sim_node.state is NodeState.DOWN and saved is not None and sim_node.id != node_id:
                alive.add((sim_node.id, saved.incarnation))  # it comes back as that member
        if len(set(members) & alive) <= len(members) // 2:
            return False
        # A node elects with its newest list, acknowledged or not: a leader shrinking the list
        # while another, cut off from it, did too leaves lists that share one member, and when
        # that one dies no list keeps a live majority (docs/cluster.md, Known limits).
        latest = [set(observe.latest_members(node)) for node in running.values()]
        return any(len(ids & alive) > len(ids) // 2 for ids in latest)

    def restart(self, node_id: str, seed_id: str | None = None) -> None:
        """A crashed node starts again, empty (or from its disk), and joins through `seed_id`
        (by default a running member, as an operator would pick after a look at `GET /cluster`;
        a running node that is no member only when none is left, itself when no other node is;
        a node restored from its disk rejoins through the members it remembers as well)."""
        sim_node = self.nodes[node_id]
        assert sim_node.state is NodeState.DOWN, sim_node.state
        assert sim_node.fault is not None
        if seed_id is None:
            # A seed that is itself joining may never get in: restarted nodes that join
            # through one another, none of them a member, wait for each other forever.
            members = self._running_members()
            choices = [
                [n for n in self.ids_in(state) if n != node_id and (n in members or anyone)]
                for anyone in (False, True)  # members first, in the same order as before
                for state in (NodeState.UP, NodeState.PAUSED)
            ]
            others = next((choice for choice in choices if choice), [])
            seed_id = self.rng.choice(others) if others else node_id
        self.checker.faults.close(sim_node.fault, self.now_ms)
        sim_node.fault = None
        self.trace.event(f"{self.now_ms} restart {node_id} joining through {seed_id}")
        self._boot(sim_node, seed_id)

    def _running(self, without: str | None = None) -> dict[str, Node]:
        """The processes running (up or paused, with their memory), but `without`."""
        return {
            sim_node.id: sim_node.node
            for sim_node in self.nodes.values()
            if sim_node.node is not None and sim_node.id != without
        }

    def _running_members(self) -> set[str]:
        """The running processes (up or paused) that the newest member list a majority
        acknowledged, as the running nodes know it, names."""
        running = self._running()
        if not running:
            return set()
        _, members = max(observe.committed_members(node) for node in running.values())
        return {
            member
            for member, incarnation in members
            if member in running and observe.incarnation(running[member]) == incarnation
        }

    def pause(self, node_id: str) -> None:
        sim_node = self.nodes[node_id]
        assert sim_node.state is NodeState.UP, sim_node.state
        sim_node.state = NodeState.PAUSED
        sim_node.fault = self.checker.faults.open("pause", [node_id], self.now_ms)
        self.trace.event(f"{self.now_ms} pause {node_id}")

    def resume(self, node_id: str) -> None:
        """The node runs again with its stale state: what waited is handled, then its timers."""
        sim_node = self.nodes[node_id]
        assert sim_node.state is NodeState.PAUSED, sim_node.state
        assert sim_node.fault is not None
        self.checker.faults.close(sim_node.fault, self.now_ms)
        sim_node.fault = None
        sim_node.state = NodeState.UP
        self.trace.event(f"{self.now_ms} resume {node_id} ({len(sim_node.held)} waiting)")
        if sim_node.commit_end_held:
            sim_node.commit_end_held = False
            self._commit_ended(sim_node)
            if sim_node.state is not NodeState.UP:
                return  # it crashed right after that commit
        held, sim_node.held = sim_node.held, []
        for event in held:
            self._feed(sim_node, event)
        self._arm(sim_node)

    def cut(self, partition: Partition) -> None:
        """Apply `partition` (replacing any partition before it)."""
        self.heal_partition()
        self.partition = partition
        self.network.cut(partition.blocked)
        self._partition_fault = self.checker.faults.open(
            partition.kind.value, partition.affected, self.now_ms, partition.description
        )
        self.trace.event(f"{self.now_ms} partition {partition.description}")

    def heal_partition(self) -> None:
        if self.partition is None:
            return
        self.network.cut(())
        assert self._partition_fault is not None
        self.checker.faults.close(self._partition_fault, self.now_ms)
        self.partition, self._partition_fault = None, None
        self.trace.event(f"{self.now_ms} partition healed")

    def clog(self, node_id: str) -> None:
        if node_id in self.network.clogged:
            return
        self.network.clog(node_id)
        self._clog_faults[node_id] = self.checker.faults.open("clog", [node_id], self.now_ms)
        self.trace.event(f"{self.now_ms} clog {node_id}")

    def unclog(self, node_id: str) -> None:
        if node_id not in self.network.clogged:
            return
        self.network.unclog(node_id)
        self.checker.faults.close(self._clog_faults.pop(node_id), self.now_ms)
        self.trace.event(f"{self.now_ms} unclog {node_id}")

    def heal(self, links: LinkConditions, receivers: ReceiverMix = HEALTHY) -> None:
        """End every fault that can end: restart crashed nodes, resume paused ones, open every
        link, and from now on use `links` and `receivers` (the liveness phase)."""
        self.heal_partition()
        for node_id in sorted(self.network.clogged):
            self.unclog(node_id)
        self.network.heal(links)
        self.receivers = receivers
        for node_id in self.ids_in(NodeState.PAUSED):
            self.resume(node_id)
        for node_id in self.ids_in(NodeState.DOWN):
            self.restart(node_id)

    # -- the cluster, as the checkers see it -----------------------------------------------------

    def views(self) -> list[ClusterView]:
        """The views of the running nodes."""
        return [
            observe.cluster_view(sim_node.node)
            for sim_node in self.nodes.values()
            if sim_node.state is NodeState.UP and sim_node.node is not None
        ]

    def task_states(self) -> dict[str, set[str]]:
        """Task id -> the states the running nodes hold or remember it in."""
        states: dict[str, set[str]] = {}
        for sim_node in self.nodes.values():
            if sim_node.node is not None:
                for task_id, state in observe.task_states(sim_node.node).items():
                    states.setdefault(task_id, set()).add(state)
        return states

    def leader(self) -> str | None:
        """The running node that claims leadership in the highest term, if any."""
        leaders = [v for v in self.views() if v.leads]
        return max(leaders, key=lambda v: v.term).node if leaders else None


def _workload_key(body: bytes, target: str) -> str | None:
    """The workload key of a delivery: in the form body, or the query string of a GET."""
    for text in (body.decode("utf-8", "replace"), target.partition("?")[2]):
        for name, value in parse_qsl(text, keep_blank_values=True):
            if name == WORKLOAD_KEY_PARAM:
                return value
    return None


def _show_message(message: object) -> str:
    """A peer message's type, and the task it is about if it is about one."""
    task_id = getattr(message, "task_id", None)
    copy = getattr(message, "copy", None)
    if task_id is None and copy is not None:
        task_id = getattr(copy, "id", None)
    name = type(message).__name__
    return name if task_id is None else f"{name} {task_id}"


def _show_event(event: Event) -> str:
    match event:
        case DeliveryResponded(delivery_id=delivery_id, status=status):
            return f"delivery #{delivery_id} answered {status}"
        case DeliveryFailed(delivery_id=delivery_id, error=error):
            return f"delivery #{delivery_id} failed {error.value}"
        case ApiRequestReceived(request_id=request_id):
            return f"request #{request_id}"
        case TimerExpired():
            return "timer"
        case PeerMessageReceived(envelope=envelope):
            return f"{type(envelope.message).__name__} from {envelope.sender}"
        case QueuesReconfigured():
            return "queues file reloaded"
        case _:
            assert_never(event)


def node_ids(count: int) -> tuple[str, ...]:
    """Stable node ids: 10.0.0.1:8088, 10.0.0.2:8088, ..."""
    return tuple(f"10.0.0.{i + 1}:8088" for i in range(count))
