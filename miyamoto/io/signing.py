"""Signed deliveries, as Standard Webhooks (https://www.standardwebhooks.com) define them.

With `--signing-key-file`, every delivery carries `webhook-id` (the task id, the same on every
attempt, so a receiver can deduplicate), `webhook-timestamp` (Unix seconds when this attempt is
sent) and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp." + body>` for each key,
space-separated. Several keys are for rotation: the receiver accepts any one it knows, so a new
key is added to the file (both sign), the receivers learn it, then the old key is removed.

Signing happens in the shell, just before the request is sent, because the timestamp must be the
send time of each attempt (receivers reject old timestamps to stop replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..logic.actions import OutboundRequest

KEY_PREFIX = "whsec_"
KEYS_MAX = 10
"""Keys one file may hold; each signs every delivery, so a few (rotation needs two)."""
KEY_BYTES_MIN = 24
"""Standard Webhooks keys are 24 to 64 random bytes."""
KEY_BYTES_MAX = 64


class SigningKeyError(ValueError):
    """A signing key file we refuse to start with; the message names the line, never the key."""


def parse_signing_keys(text: str) -> tuple[bytes, ...]:
    """The secret of each `whsec_<base64>` line (blank lines and `#` comments skipped)."""
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(KEY_PREFIX):
            raise SigningKeyError(f"line {number}: a signing key starts with {KEY_PREFIX!r}")
        try:
            secret = base64.b64decode(line.removeprefix(KEY_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise SigningKeyError(
                f"line {number}: the key after {KEY_PREFIX} is not base64"
            ) from None
        if not KEY_BYTES_MIN <= len(secret) <= KEY_BYTES_MAX:
            raise SigningKeyError(
                f"line {number}: a key is {KEY_BYTES_MIN} to {KEY_BYTES_MAX} bytes, not "
                f"{len(secret)}; make one with: echo whsec_$(openssl rand -base64 32)"
            )
        keys.append(secret)
        if len(keys) > KEYS_MAX:
            raise SigningKeyError(f"more than {KEYS_MAX} keys; the limit is {KEYS_MAX}")
    if not keys:
        raise SigningKeyError("no keys in the file")
    return tuple(keys)


def read_signing_keys(path: str) -> tuple[bytes, ...]:
    with open(path, encoding="utf-8") as file:
        return parse_signing_keys(file.read())


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySigner:
    keys: tuple[bytes, ...]
    clock_s: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        assert 1 <= len(self.keys) <= KEYS_MAX, len(self.keys)

    def sign(self, request: OutboundRequest) -> OutboundRequest:
        """`request` with the three Standard Webhooks headers added."""
        task_id = next(value for name, value in request.headers if name.lower() == "x-task-id")
        timestamp = str(int(self.clock_s()))
        signed = f"{task_id}.{timestamp}.".encode() + request.body
        signatures = " ".join(
            "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode("ascii")
            for key in self.keys
        )
        headers = (
            *request.headers,
            ("Webhook-Id", task_id),
            ("Webhook-Timestamp", timestamp),
            ("Webhook-Signature", signatures),
        )
        return OutboundRequest(
            scheme=request.scheme,
            host=request.host,
            port=request.port,
            method=request.method,
            target=request.target,
            headers=headers,
            body=request.body,
        )
