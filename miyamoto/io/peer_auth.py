"""Peer authentication: an HMAC-SHA256 over every `/_peer` batch, with a replay guard.

The sender puts one header on each POST:

    X-Miyamoto-Peer-Auth: v1 SENDER TO BOOT SEQ TIME_MS MAC

SENDER and TO are node ids (host:port), BOOT a random 64-bit number (16 hex digits) the sending
process drew at start, SEQ a counter of that process (decimal, from 1), TIME_MS the sender's wall
clock, MAC the lower-case hex HMAC-SHA256, under the cluster key, of

    b"miyamoto-peer-v1\\n" + "SENDER TO BOOT SEQ TIME_MS".encode() + b"\\n" + body

The receiver checks, before any byte of the body is decoded: the MAC under one of its keys (so
a key rotation accepts two), that TO is itself (a batch for one node is no good at another),
that TIME_MS is within `window_ms` of its clock, and that SEQ is above the highest it accepted
from that SENDER and BOOT. The window bounds what must be remembered: a batch older than it is
refused whatever its sequence, so (sender, boot) pairs not heard for a window can be forgotten.
Why both, and the clock skew this allows, is in docs/cluster.md ("Peer authentication").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ..logic.messages import is_node_id

AUTH_HEADER: Final = "x-miyamoto-peer-auth"
SCHEME: Final = "v1"
_MAC_PREFIX: Final = b"miyamoto-peer-v1\n"

KEY_CHARS_MIN: Final = 32
KEY_CHARS_MAX: Final = 1024
KEYS_MAX: Final = 8
"""Keys accepted at once: one signs, the others verify while a rotation rolls out."""
_KEY = re.compile(r"[A-Za-z0-9+/=_.-]+")
"""Key text: hex, base64 or any token without spaces or commas (commas separate keys in
MIYAMOTO_CLUSTER_KEY)."""

WINDOW_MS_DEFAULT: Final = 60_000
SENDERS_REMEMBERED_MAX: Final = 4096
"""(sender, boot) pairs whose last sequence is kept; a cluster has at most 100 members."""
AUTH_HEADER_CHARS_MAX: Final = 1024

_SEQ_MAX: Final = 2**63 - 1
_TOKEN = re.compile(r"[0-9]{1,19}")
_BOOT = re.compile(r"[0-9a-f]{16}")
_MAC = re.compile(r"[0-9a-f]{64}")


class ClusterKeyError(ValueError):
    """The key file or variable cannot be used; the message says why (never the key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterKeys:
    """The keys of a cluster: `keys[0]` signs, every one verifies."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        assert 1 <= len(self.keys) <= KEYS_MAX, len(self.keys)

    def __repr__(self) -> str:  # never print a key, not even in a traceback
        return f"ClusterKeys(<{len(self.keys)} keys>)"


def parse_keys(text: str, *, source: str, separator: str | None = None) -> ClusterKeys:
    """The keys in `text`: one per line (blank lines and lines starting with # skipped), or
    split on `separator`. Raises ClusterKeyError naming `source` and the rule broken."""
    if separator is None:
        items = [line.strip() for line in text.splitlines()]
        items = [item for item in items if item and not item.startswith("#")]
    else:
        items = [item.strip() for item in text.split(separator) if item.strip()]
    if not items:
        raise ClusterKeyError(f"{source}: no key in it")
    if len(items) > KEYS_MAX:
        raise ClusterKeyError(f"{source}: {len(items)} keys, more than the limit of {KEYS_MAX}")
    for number, item in enumerate(items, start=1):
        if not KEY_CHARS_MIN <= len(item) <= KEY_CHARS_MAX:
            raise ClusterKeyError(
                f"{source}: key {number} has {len(item)} characters; a key has "
                f"{KEY_CHARS_MIN} to {KEY_CHARS_MAX} (e.g. `openssl rand -hex 32`)"
            )
        if _KEY.fullmatch(item) is None:
            raise ClusterKeyError(
                f"{source}: key {number} has characters other than letters, digits and +/=_.-"
            )
    return ClusterKeys(keys=tuple(item.encode("ascii") for item in items))


ENV_VARIABLE: Final = "MIYAMOTO_CLUSTER_KEY"


def load_keys(key_file: str | None, environ: Mapping[str, str]) -> ClusterKeys | None:
    """The cluster keys from `--cluster-key-file` (first) or MIYAMOTO_CLUSTER_KEY (several keys
    separated by commas), or None when neither is given."""
    if key_file is not None:
        try:
            with open(key_file, encoding="ascii") as file:
                text = file.read(KEYS_MAX * (KEY_CHARS_MAX + 2) * 4)
        except UnicodeDecodeError:
            raise ClusterKeyError(f"{key_file}: not ASCII text") from None
        return parse_keys(text, source=key_file)
    value = environ.get(ENV_VARIABLE)
    if value is None:
        return None
    return parse_keys(value, source=ENV_VARIABLE, separator=",")


def _mac(key: bytes, fields: str, body: bytes) -> str:
    signer = hmac.new(key, _MAC_PREFIX, hashlib.sha256)
    signer.update(fields.encode("ascii"))
    signer.update(b"\n")
    signer.update(body)
    return signer.hexdigest()


class PeerSigner:
    """Signs the batches one process sends: one boot number, one sequence for every peer."""

    def __init__(self, keys: ClusterKeys, *, self_id: str, boot: int, clock_ms: Callable[[], int]):
        assert is_node_id(self_id), self_id
        assert 0 <= boot < 2**64, boot
        self._key = keys.keys[0]
        self._self_id = self_id
        self._boot = f"{boot:016x}"
        self._clock_ms = clock_ms
        self._seq = 0

    def header(self, to: str, body: bytes) -> tuple[str, str]:
        """The (name, value) of the auth header for POSTing `body` to node `to` now."""
        self._seq += 1
        fields = f"{self._self_id} {to} {self._boot} {self._seq} {self._clock_ms()}"
        return AUTH_HEADER, f"{SCHEME} {fields} {_mac(self._key, fields, body)}"


@dataclass(slots=True, kw_only=True)
class AuthStats:
    """Batches refused by the MAC check, by reason; for `GET /_cluster`. Only grow."""

    accepted: int = 0
    missing: int = 0
    """No auth header (a node without a key, or not a node at all)."""
    malformed: int = 0
    """An auth header that is not `v1 SENDER TO BOOT SEQ TIME_MS MAC`."""
    bad_mac: int = 0
    """The MAC matches none of our keys (another cluster's key, or the bytes were changed)."""
    wrong_receiver: int = 0
    """Signed for another node."""
    outside_window: int = 0
    """Signed more than the window away from our clock (a replay of an old batch, or skew)."""
    replayed: int = 0
    """A sequence number at or below one already accepted from that sender and boot."""
    senders_forgotten: int = 0
    """(sender, boot) pairs dropped to make room while still inside the window."""

    @property
    def refused(self) -> int:
        return (
            self.missing
            + self.malformed
            + self.bad_mac
            + self.wrong_receiver
            + self.outside_window
            + self.replayed
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "missing": self.missing,
            "malformed": self.malformed,
            "bad_mac": self.bad_mac,
            "wrong_receiver": self.wrong_receiver,
            "outside_window": self.outside_window,
            "replayed": self.replayed,
            "senders_forgotten": self.senders_forgotten,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    sender: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    reason: str
    """For the 401's error message: what was wrong, never a key or a MAC."""


class PeerVerifier:
    """Checks the auth header of each batch that reaches `/_peer`; counts every refusal."""

    def __init__(
        self,
        keys: ClusterKeys,
        *,
        self_id: str,
        clock_ms: Callable[[], int],
        window_ms: int = WINDOW_MS_DEFAULT,
        remembered_max: int = SENDERS_REMEMBERED_MAX,
    ) -> None:
        assert window_ms > 0 and remembered_max > 0, (window_ms, remembered_max)
        self._keys = keys.keys
        self._self_id = self_id
        self._clock_ms = clock_ms
        self._window_ms = window_ms
        self._remembered_max = remembered_max
        self._last: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        """(sender, boot) -> (highest sequence accepted, when, our clock ms); least recently
        accepted first."""
        self.stats = AuthStats()

    def verify(self, headers: Sequence[tuple[str, str]], body: bytes) -> Verified | Refused:
        values = [value for name, value in headers if name.lower() == AUTH_HEADER]
        if not values:
            self.stats.missing += 1
            return Refused(reason=f"no {AUTH_HEADER} header: this node needs the cluster key")
        parts = values[0].split(" ") if len(values) == 1 else []
        if len(values[0]) > AUTH_HEADER_CHARS_MAX or not _well_formed(parts):
            self.stats.malformed += 1
            return Refused(
                reason=f"malformed {AUTH_HEADER} header (one: v1 SENDER TO BOOT SEQ TIME_MS MAC)"
            )
        _, sender, to, boot, seq_text, time_text, mac = parts
        fields = " ".join(parts[1:6])
        # compare_digest on every key, not stopping at the first match: the time taken says
        # nothing about which key matched.
        matches = [hmac.compare_digest(_mac(key, fields, body), mac) for key in self._keys]
        if not any(matches):
            self.stats.bad_mac += 1
            return Refused(reason="the MAC does not match this cluster's key")
        if to != self._self_id:
            self.stats.wrong_receiver += 1
            return Refused(reason=f"signed for {to}, not for this node ({self._self_id})")
        now_ms = self._clock_ms()
        skew_ms = int(time_text) - now_ms
        if abs(skew_ms) > self._window_ms:
            self.stats.outside_window += 1
            return Refused(
                reason=f"signed {skew_ms} ms from this node's clock, outside the window of "
                f"+-{self._window_ms} ms (a replay, or clocks out of sync)"
            )
        seq = int(seq_text)
        key = (sender, boot)
        last = self._last.get(key)
        if last is not None and seq <= last[0]:
            self.stats.replayed += 1
            return Refused(reason=f"sequence {seq} already used by {sender} (a replay)")
        self._remember(key, seq, now_ms)
        self.stats.accepted += 1
        return Verified(sender=sender)

    def _remember(self, key: tuple[str, str], seq: int, now_ms: int) -> None:
        self._last[key] = (seq, now_ms)
        self._last.move_to_end(key)
        while len(self._last) > self._remembered_max:
            _, (_, at_ms) = self._last.popitem(last=False)
            if now_ms - at_ms <= self._window_ms:
                # Still inside the window: a replay of its batches would pass now. Counted, so a
                # flood of senders (only possible with the key) is visible.
                self.stats.senders_forgotten += 1


def _well_formed(parts: list[str]) -> bool:
    return (
        len(parts) == 7
        and parts[0] == SCHEME
        and is_node_id(parts[1])
        and is_node_id(parts[2])
        and _BOOT.fullmatch(parts[3]) is not None
        and _TOKEN.fullmatch(parts[4]) is not None
        and 1 <= int(parts[4]) <= _SEQ_MAX
        and _TOKEN.fullmatch(parts[5]) is not None
        and _MAC.fullmatch(parts[6]) is not None
    )


def new_boot() -> int:
    """A random boot number for this process's signer (the shell's randomness, not the logic's)."""
    return int.from_bytes(os.urandom(8), "big")
