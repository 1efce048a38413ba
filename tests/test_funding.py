"""The funding step: a card top-up and a balance transfer, one protocol, their own evidence."""

from __future__ import annotations

import json
from decimal import Decimal

from topup_guard.clock import VirtualClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.coordination import SoleGuard
from topup_guard.fleet.transfer import SafeTransfer
from topup_guard.fleet.transfer_base import TransferEntry, TransferState
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger
from topup_guard.funding import Funding, FundOutcome, FundRequest
from topup_guard.ledger.base import Attempt, AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.fleet import InProcessFleet
from topup_guard.sim.scenario import Scenario
from topup_guard.topup import SafeTopUp

D = Decimal
SCENARIO = Scenario.from_dict(json.loads(json.dumps({
    "initial_balance": 100, "topup_amount": 50, "autoreload_threshold": 5,
    "topup_latency_s": 0, "balance_latency_s": 0,
    "subaccounts": [{"api_key": "sub00001", "balance": 1}],
}), parse_float=D))  # fmt: skip


def fleet() -> tuple[InProcessFleet, SimAccount, VirtualClock]:
    clock = VirtualClock()
    account = SimAccount.from_scenario(
        SCENARIO, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, trx=DEMO_TRX
    )
    return InProcessFleet(account, clock), account, clock


async def test_a_top_up_and_a_transfer_are_funded_through_one_protocol() -> None:
    api, account, clock = fleet()
    topups: Funding[Attempt] = SafeTopUp(api, SqliteLedger(":memory:"), SoleGuard(), clock,
                                         trx=DEMO_TRX)  # fmt: skip
    transfers: Funding[TransferEntry] = SafeTransfer(
        api, SqliteTransferLedger(":memory:"), SoleGuard(), clock, primary_key=DEMO_API_KEY
    )
    top = await topups.fund(FundRequest(DEMO_API_KEY, D(50), "test", D(100)))
    moved = await transfers.fund(FundRequest("sub00001", D(20), "test", D(1)))
    assert top.outcome is FundOutcome.APPLIED
    assert top.entry is not None
    assert top.entry.state is AttemptState.SUCCEEDED
    assert moved.outcome is FundOutcome.APPLIED
    assert moved.entry is not None
    assert moved.entry.state is TransferState.SUCCEEDED
    assert len(account.topups) == 1
    assert [t.amount for t in account.transfers] == [D(20)]


async def test_an_ambiguous_transfer_is_reported_as_such_and_never_resent() -> None:
    api, account, clock = fleet()
    transfers = SafeTransfer(api, SqliteTransferLedger(":memory:"), SoleGuard(), clock,
                             primary_key=DEMO_API_KEY)  # fmt: skip
    api.add_fault("balance-transfers", "error_500_after")
    result = await transfers.fund(FundRequest("sub00001", D(20), "test"))
    assert result.outcome is FundOutcome.AMBIGUOUS
    assert result.requests == 1
    again = await transfers.fund(FundRequest("sub00001", D(20), "test"))
    assert again.outcome is FundOutcome.NOT_STARTED  # one in doubt per subaccount
    assert len(account.transfers) == 1  # applied once: the listing will say so


async def test_a_top_up_that_may_not_begin_is_not_started() -> None:
    api, account, clock = fleet()
    ledger = SqliteLedger(":memory:")
    topups = SafeTopUp(api, ledger, SoleGuard(), clock, trx=DEMO_TRX)
    api.add_fault("top-up", "error_500_after")
    first = await topups.fund(FundRequest(DEMO_API_KEY, D(50), "test"))
    assert first.outcome is FundOutcome.AMBIGUOUS
    second = await topups.fund(FundRequest(DEMO_API_KEY, D(50), "test"))  # not despite doubt
    assert second.outcome is FundOutcome.NOT_STARTED
    assert second.entry is None
    assert len(account.topups) == 1
