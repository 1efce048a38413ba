"""Every signal endpoint over a real socket: what is accepted, what is refused, what is counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from tests.signals.conftest import NOW, TOKEN, Running
from topup_guard.signals.inbox import SignalReading

SMS_OK = {
    "message-count": "2",
    "messages": [
        {"to": "447700900000", "message-id": "0A0000000123ABCD1", "status": "0",
         "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "12345"},
        {"to": "447700900000", "message-id": "0A0000000123ABCD2", "status": "0",
         "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "12345"},
    ],
}  # fmt: skip
SMS_REFUSED = {
    "message-count": "1",
    "messages": [{"to": "447700900000", "status": "9", "error-text": "Quota Exceeded - rejected"}],
}
SMS_XML = b"""<?xml version="1.0" encoding="UTF-8" ?>
<mt-submission-response>
  <messages count="1">
    <message>
      <to>447700900000</to><messageId>0A0000001234567B</messageId><status>0</status>
      <remainingBalance>7.50000000</remainingBalance><messagePrice>0.03330000</messagePrice>
      <network>12345</network>
    </message>
  </messages>
</mt-submission-response>"""


async def post(running: Running, path: str, *, json: object = None, data: bytes | str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    async with running.http.post(
        running.url + path, json=json, data=data, headers=headers
    ) as answer:
        return answer.status, await answer.text()


async def settled(running: Running) -> None:
    """Let the feeder hand accepted signals to the inbox."""
    for _ in range(50):
        if running.server.queue_depth == 0:
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0)


# --- accepted ------------------------------------------------------------------------------------
async def test_an_sms_answer_gives_one_reading_and_counts_each_accepted_part(
    signal: Running,
) -> None:
    assert await post(signal, "/v1/signals/sms", json=SMS_OK) == (202, '{"status": "accepted"}')
    await settled(signal)
    assert signal.inbox.wake.is_set()
    assert not signal.inbox.urgent
    batch = signal.inbox.drain()
    assert batch.readings == [SignalReading(NOW, Decimal("3.14159265"), trusted=True)]
    assert (batch.refusals, batch.successes) == (0, 2)
    assert signal.received("sms") == 1
    assert signal.inbox.last_reading_wall == NOW


async def test_a_status_9_answer_is_an_urgent_refusal_without_a_reading(signal: Running) -> None:
    assert (await post(signal, "/v1/signals/sms", json=SMS_REFUSED))[0] == 202
    await settled(signal)
    assert signal.inbox.urgent
    batch = signal.inbox.drain()
    assert (batch.readings, batch.refusals, batch.successes) == ([], 1, 0)
    assert not signal.inbox.urgent
    assert not signal.inbox.wake.is_set()


async def test_the_answer_time_comes_from_the_at_query_parameter(signal: Running) -> None:
    assert (await post(signal, f"/v1/signals/sms?at={NOW - 2.5}", json=SMS_OK))[0] == 202
    await settled(signal)
    assert signal.inbox.drain().readings[0].at_wall == NOW - 2.5


async def test_the_xml_answer_is_read_like_the_json_one(signal: Running) -> None:
    status, _ = await post(signal, "/v1/signals/sms", data=SMS_XML,
                           headers={"Content-Type": "text/xml"})  # fmt: skip
    assert status == 202
    await settled(signal)
    assert [r.balance for r in signal.inbox.drain().readings] == [Decimal("7.5")]


async def test_flat_form_fields_are_read_too(signal: Running) -> None:
    body = "status=0&remaining-balance=1.25000000&message-price=0.0333"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await post(signal, "/v1/signals/sms", data=body, headers=form))[0] == 202
    await settled(signal)
    batch = signal.inbox.drain()
    assert [r.balance for r in batch.readings] == [Decimal("1.25")]
    assert batch.successes == 1


async def test_a_bare_balance_with_its_time(signal: Running) -> None:
    body = {"balance": "12.34", "at": NOW - 1}
    assert (await post(signal, "/v1/signals/balance", json=body))[0] == 202
    await settled(signal)
    batch = signal.inbox.drain()
    assert batch.readings == [SignalReading(NOW - 1, Decimal("12.34"), True)]
    assert signal.received("balance") == 1


async def test_a_bare_balance_without_a_time_is_dated_on_arrival(signal: Running) -> None:
    assert (await post(signal, "/v1/signals/balance", json={"balance": 5}))[0] == 202
    await settled(signal)
    assert signal.inbox.drain().readings == [SignalReading(NOW, Decimal(5), True)]


@pytest.mark.parametrize(
    "body",
    [
        {"code": "1070"},
        {"code": 1070},
        {"type": "https://developer.vonage.com/api-errors/messages#1070",
         "title": "Partner quota exceeded", "detail": "...", "instance": "abc"},
        {"type": "https://developer.vonage.com/api-errors#low-balance", "title": "Low balance"},
        {"status": "9"},
    ],
    ids=["code-string", "code-number", "messages-1070", "problem-low-balance", "sms-status-9"],
)  # fmt: skip
async def test_out_of_credit_refusals_make_the_inbox_urgent(signal: Running, body: object) -> None:
    assert (await post(signal, "/v1/signals/refusal", json=body))[0] == 202
    await settled(signal)
    assert signal.inbox.urgent
    assert signal.inbox.wake.is_set()
    assert signal.inbox.drain().refusals == 1
    assert signal.received("refusal") == 1


# --- refused: 400, counted, nothing changed -----------------------------------------------------
BAD = [
    ("/v1/signals/sms", b"{not json", "malformed"),
    ("/v1/signals/sms", b"[" * 30000, "malformed"),
    ("/v1/signals/sms", b'{"messages": "nope"}', "wrong_shape"),
    ("/v1/signals/sms", b'{"messages": []}', "wrong_shape"),
    ("/v1/signals/sms", b'{"messages": [{"to": "1"}]}', "wrong_shape"),
    ("/v1/signals/sms", b'{"messages": [{"status": "0", "remaining-balance": "NaN"}]}',
     "bad_balance"),
    ("/v1/signals/sms", b'{"messages": [{"status": "0", "remaining-balance": "1e5"}]}',
     "bad_balance"),
    ("/v1/signals/sms", b'{"messages": [{"status": "0", "remaining-balance": "2000000000"}]}',
     "bad_balance"),
    ("/v1/signals/sms", b'<!DOCTYPE x [<!ENTITY a "aaaa">]><message><status>0</status></message>',
     "malformed"),
    ("/v1/signals/sms", b"\x00\xff\xfe garbage", "malformed"),
    ("/v1/signals/balance", b'{"balance": "Infinity"}', "bad_balance"),
    ("/v1/signals/balance", b'{"balance": -5000000}', "bad_balance"),
    ("/v1/signals/balance", b'{"balance": true}', "bad_balance"),
    ("/v1/signals/balance", b'{"balance": ""}', "bad_balance"),
    ("/v1/signals/balance", b'{"value": "12.34"}', "wrong_shape"),
    ("/v1/signals/balance", b'{"balance": NaN}', "malformed"),
    ("/v1/signals/balance", b'{"balance": "1", "at": 1e400}', "bad_at"),
    ("/v1/signals/balance", b'{"balance": "1", "at": 4000000000}', "bad_at"),
    ("/v1/signals/balance", b'{"balance": "1", "at": 1000}', "bad_at"),
    ("/v1/signals/refusal", b'{"code": "1000"}', "not_out_of_credit"),
    ("/v1/signals/refusal", b'{"type": "https://developer.vonage.com/api-errors#unauthorized"}',
     "not_out_of_credit"),
    ("/v1/signals/refusal", b"[1070]", "wrong_shape"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "reason"), BAD, ids=[f"{r}-{i}" for i, (_, _, r) in enumerate(BAD)]
)
async def test_a_bad_body_is_a_400_with_one_line_counted_by_reason_and_changes_nothing(
    signal: Running, path: str, body: bytes, reason: str
) -> None:
    status, text = await post(signal, path, data=body, headers={"Content-Type": "application/json"})
    assert status == 400
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert len(text) < 200
    assert signal.rejected(reason) == 1
    await settled(signal)
    assert signal.server.queue_depth == 0
    assert not signal.inbox.wake.is_set()
    assert not signal.inbox.urgent
    assert signal.inbox.drain().readings == []
    assert signal.inbox.last_reading_wall is None


async def test_a_bad_at_query_parameter_refuses_the_whole_answer(signal: Running) -> None:
    assert (await post(signal, "/v1/signals/sms?at=soon", json=SMS_OK))[0] == 400
    assert signal.rejected("bad_at") == 1
    assert signal.inbox.drain().successes == 0


async def test_an_oversized_body_is_refused_before_it_is_read(signal: Running) -> None:
    status, _ = await post(signal, "/v1/signals/sms", data=b"{" + b" " * 70_000 + b"}")
    assert status == 413
    assert signal.rejected("too_large") == 1


async def test_an_oversized_chunked_body_is_refused_too(signal: Running) -> None:
    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(100):
            yield b" " * 1024

    status, _ = await post(signal, "/v1/signals/sms", data=chunks())  # type: ignore[arg-type]
    assert status == 413
    assert signal.rejected("too_large") == 1


async def test_unknown_paths_and_methods_are_counted_and_change_nothing(signal: Running) -> None:
    assert (await post(signal, "/v1/signals/other", json=SMS_OK))[0] == 404
    async with signal.http.get(signal.url + "/v1/signals/sms") as answer:
        assert answer.status == 405
    assert signal.rejected("not_found") == 2
    assert signal.inbox.drain().successes == 0


# --- the token ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ",
     f"bearer{TOKEN}", "Bearer \u00e9\u00e9"],
    ids=["missing", "wrong", "basic", "longer", "empty", "no-space", "non-ascii"],
)  # fmt: skip
async def test_with_a_token_every_other_authorization_is_a_401(
    guarded: Running, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    status, text = await post(guarded, "/v1/signals/sms", json=SMS_OK, headers=headers)
    assert status == 401
    assert TOKEN not in text
    assert guarded.rejected("unauthorized") == 1
    await settled(guarded)
    assert guarded.inbox.drain().successes == 0


async def test_with_the_token_readings_are_trusted(guarded: Running) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await post(guarded, "/v1/signals/sms", json=SMS_OK, headers=headers))[0] == 202
    await settled(guarded)
    (reading,) = guarded.inbox.drain().readings
    assert reading.trusted


# --- bounds ---------------------------------------------------------------------------------------
async def test_a_full_queue_answers_429_and_keeps_what_it_has(
    start_signal: Callable[..., Awaitable[Running]],
) -> None:
    running = await start_signal(queue_size=2)
    running.server._feeder.cancel()  # an engine loop that is busy: nothing leaves the queue
    statuses = [(await post(running, "/v1/signals/balance", json={"balance": "1"}))[0]
                for _ in range(4)]  # fmt: skip
    assert statuses == [202, 202, 429, 429]
    assert running.server.queue_depth == 2
    assert running.rejected("queue_full") == 2
    metric = running.metric("topup_guard.signal_queue_depth")
    assert metric == {(): 2}


async def test_readings_the_engine_does_not_drain_are_capped_newest_kept(
    start_signal: Callable[..., Awaitable[Running]],
) -> None:
    running = await start_signal(max_readings=3)
    for i in range(5):
        assert (await post(running, "/v1/signals/balance", json={"balance": str(i)}))[0] == 202
    await settled(running)
    assert [r.balance for r in running.inbox.drain().readings] == [2, 3, 4]
    assert running.inbox.dropped == 2


async def test_stopping_hands_accepted_signals_to_the_inbox(signal: Running) -> None:
    signal.server._feeder.cancel()
    assert (await post(signal, "/v1/signals/refusal", json={"code": "1070"}))[0] == 202
    await signal.server.stop()
    assert signal.inbox.drain().refusals == 1
