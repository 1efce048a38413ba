"""The inbox and the parser without sockets: what a drain returns, what a body yields."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard.signals.inbox import Signal, SignalInbox, SignalReading
from topup_guard.signals.parse import BadSignal, parse_at, parse_balance_value, parse_sms


def reading(at: float, balance: str = "1") -> SignalReading:
    return SignalReading(at, Decimal(balance), trusted=True)


def test_a_drain_returns_everything_since_the_last_one_and_clears_it() -> None:
    inbox = SignalInbox()
    inbox.offer(Signal((reading(10.0),), successes=1))
    inbox.offer(Signal(refusals=2))
    assert inbox.wake.is_set()
    assert inbox.urgent
    batch = inbox.drain()
    assert (batch.readings, batch.refusals, batch.successes) == ([reading(10.0)], 2, 1)
    assert inbox.drain().readings == []
    assert not inbox.wake.is_set()
    assert not inbox.urgent


def test_readings_keep_arrival_order_but_the_last_reading_time_is_the_newest() -> None:
    inbox = SignalInbox()
    inbox.offer(Signal((reading(20.0), reading(10.0))))  # two sender replicas, out of order
    assert [r.at_wall for r in inbox.drain().readings] == [20.0, 10.0]
    assert inbox.last_reading_wall == 20.0


def test_an_empty_signal_does_not_wake_the_engine() -> None:
    inbox = SignalInbox()
    inbox.offer(Signal())
    assert not inbox.wake.is_set()


def test_the_lowest_balance_of_a_multipart_answer_is_its_one_reading() -> None:
    body = (b'{"message-count": "3", "messages": [{"status": "0", "remaining-balance": "2.5"},'
            b'{"status": "0", "remaining-balance": "2.4"}, {"status": "1"}]}')  # fmt: skip
    parsed = parse_sms(body)
    assert parsed.readings == ((None, Decimal("2.4")),)
    assert parsed.successes == 2
    assert parsed.refusals == 0


@pytest.mark.parametrize("value", ["12.34", "0", "-0.5", "1000000000", 7, Decimal("0.00000001")])
def test_plain_decimal_balances_are_taken_exactly(value: object) -> None:
    assert parse_balance_value(value) == Decimal(str(value))


@pytest.mark.parametrize(
    "value",
    ["1e3", "NaN", "-Infinity", "", " ", "1,5", "0x10", "1000000000.01", "-1000001", None, True,
     [1], 1.5, "1.0000000000001"],
)  # fmt: skip
def test_anything_else_is_a_bad_balance(value: object) -> None:
    with pytest.raises(BadSignal) as caught:
        parse_balance_value(value)
    assert caught.value.reason == "bad_balance"


def test_at_is_accepted_within_an_hour_back_and_a_minute_ahead() -> None:
    assert parse_at("1000.5", 1000.0) == 1000.5
    assert parse_at(1000 - 3600, 1000.0) == -2600
    for bad in (1000 - 3601, 1061, "nan", "inf", True, None):
        with pytest.raises(BadSignal):
            parse_at(bad, 1000.0)
