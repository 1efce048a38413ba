"""The senders' helper: forwards over a real socket, returns at once, never raises, gives up fast.

The helper posts from its own thread with blocking urllib, so the signal server (in this test's
event loop) keeps serving while the test awaits the result.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from tests.signals.conftest import NOW, TOKEN, Running
from topup_guard import signals
from topup_guard.signals import sender

SMS = {
    "message-count": "1",
    "messages": [{"status": "0", "remaining-balance": "4.20000000", "message-price": "0.05"}],
}


@pytest.fixture(autouse=True)
def _forwarder_ready() -> Iterator[None]:
    """Each test starts with an idle forwarder that is not pausing after an earlier failure."""
    sender._FORWARDER._down_until = 0.0
    yield
    deadline = time.monotonic() + 5
    while sender.stats().pending and time.monotonic() < deadline:
        time.sleep(0.01)
    sender._FORWARDER._down_until = 0.0


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_an_sms_answer_dict_reaches_the_inbox_dated_when_it_was_forwarded(
    signal: Running,
) -> None:
    sent = sender.stats().sent
    signals.forward_sms_answer(SMS, url=signal.url, at=NOW - 0.25)
    await until(lambda: signal.inbox.pending == 1)
    (reading,) = signal.inbox.drain().readings
    assert (reading.at_wall, reading.balance) == (NOW - 0.25, Decimal("4.2"))
    await until(lambda: sender.stats().sent == sent + 1)


async def test_the_raw_body_a_balance_and_a_refusal_with_the_token(guarded: Running) -> None:
    raw = b'{"message-count":"1","messages":[{"status":"0","remaining-balance":"1.5"}]}'
    signals.forward_sms_answer(raw, url=guarded.url, token=TOKEN, at=NOW)
    signals.forward_balance(Decimal("9.75"), url=guarded.url, token=TOKEN, at=NOW - 1)
    signals.forward_refusal(url=guarded.url, token=TOKEN)
    await until(lambda: guarded.inbox.pending == 2 and guarded.inbox.urgent)
    batch = guarded.inbox.drain()
    assert sorted(r.balance for r in batch.readings) == [Decimal("1.5"), Decimal("9.75")]
    assert all(r.trusted for r in batch.readings)
    assert batch.refusals == 1


async def test_url_and_token_come_from_the_environment(
    guarded: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_GUARD_SIGNAL_URL", guarded.url)
    monkeypatch.setenv("TOPUP_GUARD_SIGNAL_TOKEN", TOKEN)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # ignored: the token stays local
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    signals.forward_balance("3.00", at=NOW)
    await until(lambda: guarded.inbox.pending == 1)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a guard stuck or paused)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_a_server_that_never_answers_costs_the_sender_nothing_and_times_out_in_100_ms(
    silent_server: str,
) -> None:
    failed = sender.stats().failed
    started = time.perf_counter()
    signals.forward_sms_answer(SMS, url=silent_server)
    # The call came back before the post it queued gave up: it never waits on the network.
    # (How fast it returns is measured in bench/, not asserted here: a loaded CI machine.)
    assert sender.stats().failed == failed, "the call waited for the post to time out"
    await until(lambda: sender.stats().failed == failed + 1, timeout=2.0)
    gave_up_s = time.perf_counter() - started
    assert 0.09 <= gave_up_s < 1.0, f"gave up after {gave_up_s * 1000:.0f} ms"


async def test_a_burst_at_a_dead_guard_is_dropped_not_queued_and_never_blocks(
    silent_server: str,
) -> None:
    before = sender.stats()
    slowest = 0.0
    for _ in range(3000):  # more than the queue holds
        started = time.perf_counter()
        signals.forward_balance("1", url=silent_server)
        slowest = max(slowest, time.perf_counter() - started)
    await until(lambda: sender.stats().pending == 0, timeout=5.0)
    after = sender.stats()
    # No call waited for a post to time out (100 ms): a dead guard never blocks the sender.
    assert slowest < 0.09, f"one call took {slowest * 1000:.1f} ms"
    assert after.dropped - before.dropped >= 3000 - 2  # one or two timed out, the rest dropped
    assert after.failed - before.failed <= 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: signals.forward_sms_answer(SMS, url="ftp://127.0.0.1/x"),
        lambda: signals.forward_sms_answer({(1, 2): "tuple key"}, url="http://127.0.0.1:9"),
        lambda: signals.forward_balance("1", url="not a url"),
        lambda: signals.forward_balance("1", at="soon"),  # type: ignore[arg-type]
        lambda: signals.forward_refusal(b"{}", url=""),
    ],
    ids=["ftp-url", "unserialisable", "no-scheme", "bad-at", "empty-url-no-env"],
)
def test_bad_arguments_never_raise_into_the_sender_and_are_counted(
    call: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_GUARD_SIGNAL_URL", "file:///etc/passwd")  # the empty url's fallback
    failed = sender.stats().failed
    call()
    assert sender.stats().failed == failed + 1


async def test_refused_connections_are_counted_as_failures(unused_tcp_port: int) -> None:
    failed = sender.stats().failed
    signals.forward_balance("1", url=f"http://127.0.0.1:{unused_tcp_port}")
    await until(lambda: sender.stats().failed == failed + 1)
