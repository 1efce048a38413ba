"""Garbage from the API is never taken for a balance; a negative (postpaid) balance is one.

Over real sockets, with the simulator's body faults (HTML pages, empty and multi-megabyte bodies,
``value`` as a string, ``NaN``/``Infinity`` literals, redirects, truncated JSON): a healthy account
hit by five garbled reads in a row must see no top-up at all (a misread as "low" would cause one),
and the guard must report the poll as failed (PollFailed, POLL_FAILING) instead of guessing.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.netrig import fault, run_guard
from topup_guard import retry
from topup_guard.events import Condition, ConditionsChanged, PollCompleted, PollFailed

GARBAGE = {
    "html_error": "ServerError",  # a 502 page from a proxy: a server error, retried as a read
    "empty_body": "MalformedResponseError",
    "huge_body": "MalformedResponseError",
    "value_string": "MalformedResponseError",
    "value_nan": "MalformedResponseError",
    "value_infinity": "MalformedResponseError",
    "malformed_json": "MalformedResponseError",
    "redirect": "MalformedResponseError",
}


@pytest.fixture(autouse=True)
def _no_backoff() -> None:
    retry.set_testing(True)
    yield  # type: ignore[misc]
    retry.set_testing(False)


@pytest.mark.parametrize("kind", sorted(GARBAGE))
async def test_garbage_is_never_a_balance_and_causes_no_top_up(
    kind: str, tmp_path: Path, tally: Tally
) -> None:
    result = await run_guard(
        tmp_path, [fault("get-balance", kind, 5)], seconds=120.0, balance="100", rate="0.01"
    )
    assert len(result.consumed) == 5
    assert result.api.misreads == []
    assert result.api.read_errors == {GARBAGE[kind]: 5}
    assert result.api.posts == 0, "a garbled read must never lead to a top-up"
    assert result.sim.account.topups == []
    events = result.events.events
    failed = [e for e in events if isinstance(e, PollFailed)]
    assert failed, "four garbled reads in a row must fail the poll, visibly"
    assert failed[0].error_type == GARBAGE[kind]
    assert any(
        isinstance(e, ConditionsChanged) and Condition.POLL_FAILING in e.active for e in events
    )
    polled = [e.balance.value for e in events if isinstance(e, PollCompleted)]
    assert polled, "the guard recovers once the answers are sane again"
    assert all(Decimal("98") < v <= Decimal("100") for v in polled)
    tally.add("garbage_answers_rejected", 5)
    tally.add("topups_from_garbage", len(result.sim.account.topups))


async def test_real_negative_balance_is_forecast_and_topped_up(
    tmp_path: Path, tally: Tally
) -> None:
    """A postpaid account already in debt (-5 EUR) and spending: accepted, forecast, topped up."""
    result = await run_guard(tmp_path, [], seconds=120.0, balance="-5", rate="0.05")
    assert result.api.misreads == []
    assert result.api.read_errors == {}
    polled = [e for e in result.events.events if isinstance(e, PollCompleted)]
    assert polled[0].balance.value == Decimal("-5")
    assert any(e.forecast is not None and e.balance.value < 0 for e in polled)
    # From -5 EUR: one top-up to reach the floor, one more for the headroom the guard keeps in
    # hand (floor + one top-up), so it can sleep a whole poll interval afterwards.
    assert result.received == result.succeeded == 2
    assert result.sim.account.balance > 10
    tally.add("negative_balances_accepted", sum(1 for e in polled if e.balance.value < 0))


async def test_debt_answer_is_accepted_as_a_balance(tmp_path: Path, tally: Tally) -> None:
    """``negative_balance``: the answer is a debt. The guard takes it as the balance (it is a
    legitimate value), acts on it without crashing, and the ledger matches the account."""
    result = await run_guard(
        tmp_path, [fault("get-balance", "negative_balance", 1)], seconds=60.0, balance="100",
        rate="0.01",
    )  # fmt: skip
    assert result.api.read_errors == {}
    polled = [e.balance.value for e in result.events.events if isinstance(e, PollCompleted)]
    assert Decimal("-100") in polled
    assert result.received == result.succeeded
    assert result.unresolved == 0
    tally.add("negative_balances_accepted")
