"""Fire-and-forget forwarding for senders: stdlib only, never raises, never blocks the caller.

A call puts one small request on a bounded in-memory queue and returns (microseconds); one
daemon thread posts it with ``urllib`` and a 100 ms timeout per socket operation. When the guard
is down, slow or gone, requests fail or are dropped (and counted in ``stats()``), and after a
failure the thread pauses forwarding for a second; the sender never notices. The thread is
started on first use, and again in a forked child (gunicorn and friends fork after import, and
threads do not survive a fork).

Defaults come from the environment so a sender needs no code changes across deployments:
``TOPUP_GUARD_SIGNAL_URL`` (default ``http://127.0.0.1:8081``) and ``TOPUP_GUARD_SIGNAL_TOKEN``.
Proxies from ``HTTP_PROXY`` are ignored and redirects are not followed: the token goes to the
configured address and nowhere else.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

DEFAULT_URL = "http://127.0.0.1:8081"
TIMEOUT_S = 0.1
QUEUE_SIZE = 1000
PAUSE_AFTER_FAILURE_S = 1.0
"""After a timeout, refusal, 429 or 5xx, signals are dropped (counted) for this long: a guard that
is down costs one timeout a second, and the queue never backs up behind it."""


@dataclass(frozen=True, slots=True)
class ForwardStats:
    """What the forwarder did since the process (or its fork) started."""

    sent: int
    failed: int
    dropped: int
    pending: int


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect would carry the Authorization header elsewhere


class _Forwarder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._queue: queue.Queue[urllib.request.Request] = queue.Queue(maxsize=QUEUE_SIZE)
        self.sent = self.failed = self.dropped = 0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        self._thread: threading.Thread | None = None
        self._down_until = 0.0

    def submit(self, request: urllib.request.Request) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self.dropped += 1

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._thread is not None:
            return
        with self._lock:
            if self._pid != pid:  # first use, or a forked child: the parent's thread is gone
                self._reset()
                self._pid = pid
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="topup-guard-signal", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            try:
                if time.monotonic() < self._down_until:
                    self.dropped += 1  # the guard just failed us: do not queue up timeouts
                    continue
                with self._opener.open(request, timeout=TIMEOUT_S) as answer:
                    answer.read(1024)
                self.sent += 1
            except urllib.error.HTTPError as exc:  # it answered: a bad body (400) costs nothing
                self.failed += 1
                if exc.code == 429 or exc.code >= 500:
                    self._down_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            except Exception:  # refused, timed out, reset: counted, never raised
                self.failed += 1
                self._down_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
            finally:
                self._queue.task_done()

    def stats(self) -> ForwardStats:
        return ForwardStats(self.sent, self.failed, self.dropped, self._queue.qsize())


_FORWARDER = _Forwarder()


def stats() -> ForwardStats:
    """Counts of forwarded, failed and dropped signals in this process."""
    return _FORWARDER.stats()


def _post(
    path: str,
    body: bytes,
    content_type: str,
    url: str | None,
    token: str | None,
    query: Mapping[str, str] | None = None,
) -> None:
    base = (url or os.environ.get("TOPUP_GUARD_SIGNAL_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError("url: want http:// or https://")
    target = base + path + ("?" + urlencode(query) if query else "")
    headers = {"Content-Type": content_type}
    token = token if token is not None else os.environ.get("TOPUP_GUARD_SIGNAL_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # S310: the scheme is checked above (no file:// or custom schemes).
    _FORWARDER.submit(urllib.request.Request(target, data=body, headers=headers, method="POST"))  # noqa: S310


def _encode(payload: bytes | str | Mapping[str, Any]) -> tuple[bytes, str]:
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode("utf-8")
    else:
        body = json.dumps(payload, default=str).encode("utf-8")
    head = body.lstrip()[:1]
    if head == b"{":
        return body, "application/json"
    if head == b"<":
        return body, "application/xml"
    return body, "application/x-www-form-urlencoded"


def forward_sms_answer(
    answer: bytes | str | Mapping[str, Any],
    *,
    url: str | None = None,
    token: str | None = None,
    at: float | None = None,
) -> None:
    """Forward one SMS API answer (the raw body, or its parsed dict) to the guard.

    ``at`` is when the answer arrived (default: now, taken at the call, not when it is posted).
    Returns at once; never raises.
    """
    try:
        body, kind = _encode(answer)
        when = time.time() if at is None else float(at)
        _post("/v1/signals/sms", body, kind, url, token, {"at": f"{when:.3f}"})
    except Exception:  # documented: never raises into the sender
        _FORWARDER.failed += 1


def forward_balance(
    balance: str | Decimal,
    *,
    url: str | None = None,
    token: str | None = None,
    at: float | None = None,
) -> None:
    """Forward a balance the sender saw (e.g. Number Insight's ``remaining_balance``).

    Returns at once; never raises.
    """
    try:
        when = time.time() if at is None else float(at)
        body = json.dumps({"balance": str(balance), "at": round(when, 3)}).encode()
        _post("/v1/signals/balance", body, "application/json", url, token)
    except Exception:  # documented: never raises into the sender
        _FORWARDER.failed += 1


def forward_refusal(
    error: bytes | str | Mapping[str, Any] | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
) -> None:
    """Forward an out-of-credit refusal: the Messages API error body, or nothing for code 1070.

    Returns at once; never raises.
    """
    try:
        body, kind = _encode(error if error is not None else {"code": "1070"})
        _post("/v1/signals/refusal", body, kind, url, token)
    except Exception:  # documented: never raises into the sender
        _FORWARDER.failed += 1


__all__ = [
    "DEFAULT_URL",
    "TIMEOUT_S",
    "ForwardStats",
    "forward_balance",
    "forward_refusal",
    "forward_sms_answer",
    "stats",
]
