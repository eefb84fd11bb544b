"""Security on vs off: the same node with and without API tokens and signed deliveries.

50 kept-alive clients enqueue tasks due immediately, each carrying `Authorization: Bearer`; the
node delivers them to the fast receiver as it goes, signing each delivery when the keys are on.
The enqueue rate under that mixed load is compared between a node started plain and one started
with `--api-tokens-file` and `--signing-key-file` (token checks on every request, an HMAC per
delivery), in the same run: the goal is on >= 0.9 x off.
"""

from __future__ import annotations

import base64

from .. import bodies
from ..context import BenchContext
from ..httpc import wait_for_quiet
from ..load import Load
from ..procs import Launcher
from ..table import Row, cpu_share, goal, rate, ratio_of

SECURITY_GOAL_RATIO = 0.9
TOKEN = "bench-token-0123456789abcdef"
SIGNING_KEY = "whsec_" + base64.b64encode(b"bench signing key, 32 bytes long").decode()
_DRAIN_S_MAX = 30.0


def security(ctx: BenchContext) -> list[Row]:
    scenario = "tokens+signing"
    duration_s = ctx.duration_s(10.0, 2.0)
    problem = ctx.node_problem()
    if problem is not None:
        return [Row(scenario=scenario, system="miyamoto node", result=f"skipped: {problem}")]
    rows: list[Row] = []
    off_rate = off_per_cpu = None
    for on in (False, True):
        with Launcher() as launcher:
            extra: list[str] = []
            if on:
                tokens_path = launcher.tmp_dir / "tokens"
                tokens_path.write_text(f"bench {TOKEN} enqueue,read\n")
                key_path = launcher.tmp_dir / "signing-key"
                key_path.write_text(SIGNING_KEY + "\n")
                extra = ["--api-tokens-file", str(tokens_path), "--signing-key-file", str(key_path)]
            _receiver, receiver_port = ctx.start_receiver(launcher, cpu=ctx.load_cpu)
            node, port = ctx.start_node(launcher, cpu=ctx.server_cpu, extra_args=extra)
            load = Load(
                path=bodies.QUEUE_PATH,
                body=bodies.form_task(bodies.receiver_url(receiver_port), countdown_s=0),
                content_type=bodies.FORM,
                connections=50,
                headers=(("Authorization", f"Bearer {TOKEN}"),),
            )
            measured = ctx.measure(
                launcher, node, load, [port], duration_s=duration_s, load_cpu=ctx.load_cpu
            )
            stats = wait_for_quiet(receiver_port, measured.load.ok, _DRAIN_S_MAX)
        enqueue_rate = measured.load.rate_per_s
        notes = [f"{int(stats['count']):,} delivered"]
        if measured.load.errors:
            notes.append(measured.load.errors)
        if not on:
            off_rate, off_per_cpu = enqueue_rate, measured.per_cpu
        ratio = ratio_of(enqueue_rate, off_rate)
        met = ratio is not None and ratio >= SECURITY_GOAL_RATIO
        ctx.keep("security_" + ("on" if on else "off"), enqueue_rate, measured.per_cpu)
        rows.append(
            Row(
                scenario=scenario,
                system="node, tokens+signing " + ("on" if on else "off"),
                result=rate(enqueue_rate),
                ratio=ratio,
                per_cpu=measured.per_cpu,
                cpu_ratio=ratio_of(measured.per_cpu, off_per_cpu),
                goal=goal(f"≥ {SECURITY_GOAL_RATIO}x off", met) if on else "",
                server_cpu=cpu_share(measured.server_cpu_s, measured.load.window_s),
                load_cpu=cpu_share(measured.load.gen_cpu_s, measured.load.window_s),
                generator=measured.load.generator,
                note="; ".join(notes),
            )
        )
    return rows
