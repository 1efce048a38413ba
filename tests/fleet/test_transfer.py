"""SafeTransfer over real HTTP: refusals say what to do, fenced or dry runs send nothing, a crash's
PENDING is settled by listing, every transfer is one span and its logs name the account."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.fleet.conftest import SHARED
from tests.simctl import inject_fault
from topup_guard import retry
from topup_guard.clock import SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.coordination import SoleGuard
from topup_guard.errors import NotFoundError, ServerError, ValidationError
from topup_guard.fleet.transfer import SafeTransfer, TransferOutcome, iso_utc
from topup_guard.fleet.transfer_caps import DAY, Caps, allowance
from topup_guard.fleet.transfer_ledger import SqliteTransferLedger, TransferState
from topup_guard.fleet.transfer_text import is_definite_refusal
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.client import VonageClient

TEN = Decimal(10)


class Lease:
    """A coordinator whose lease the test takes away (``answers``: may_spend's next answers)."""

    def __init__(self, epoch: int = 1, holder: str = "pod-a:1", answers: list[bool] | None = None):
        self._epoch, self._holder = epoch, holder
        self.answers = answers or []

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def epoch(self) -> int:
        return self._epoch

    def may_spend(self) -> bool:
        return self.answers.pop(0) if self.answers else True

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def make(
    vonage: VonageClient, ledger: SqliteTransferLedger, coordinator: object = None, **kw: object
) -> SafeTransfer:
    return SafeTransfer(vonage, ledger, coordinator or SoleGuard("test:1"), SystemClock(),  # type: ignore[arg-type]
                        primary_key=DEMO_API_KEY, verify_after_s=0.2, **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_a_transfer_is_recorded_then_applied_with_the_entrys_reference(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    result = await make(vonage, ledger).send("sub00001", TEN, "below the floor")
    assert result.outcome is TransferOutcome.APPLIED
    assert result.requests == 1
    (applied,) = fleet_sim.account.transfers
    assert result.entry is not None
    assert applied.reference == result.entry.reference == ledger.reference_for(result.entry)
    assert (result.entry.state, result.entry.vonage_id) == (TransferState.SUCCEEDED, applied.id)
    assert result.entry.applied_amount == TEN
    assert fleet_sim.account.subaccounts["sub00001"].balance == Decimal(11)


@pytest.mark.parametrize(
    ("account", "amount", "said", "action"),
    [
        ("sub00001", Decimal(1000), "Insufficient Credit", "lacks the balance"),
        (SHARED, TEN, "only allowed between", "its own balance"),
        (DEMO_API_KEY, TEN, "must be different", "transfer_amount"),
    ],
)
async def test_a_definite_refusal_is_failed_with_what_to_do_and_moves_nothing(
    account: str, amount: Decimal, said: str, action: str, fleet_sim: RunningSimulator,
    vonage: VonageClient, ledger: SqliteTransferLedger,
) -> None:  # fmt: skip
    result = await make(vonage, ledger).send(account, amount, "below the floor")
    assert result.outcome is TransferOutcome.REFUSED
    assert result.entry is not None
    assert result.entry.state is TransferState.FAILED
    assert said in result.detail
    assert "nothing was moved" in result.detail
    assert result.action is not None
    assert action in result.action
    assert fleet_sim.account.transfers == []
    again = await make(vonage, ledger).send(account, Decimal(1), "retry")
    assert again.outcome is not TransferOutcome.NOT_STARTED, "a FAILED entry frees the account"


async def test_wrong_credentials_are_a_refusal_that_names_the_settings(
    fleet_sim: RunningSimulator, ledger: SqliteTransferLedger
) -> None:
    async with VonageClient(DEMO_API_KEY, "wrong-secret", api_url=fleet_sim.url,
                            rest_url=fleet_sim.url) as bad:  # fmt: skip
        result = await make(bad, ledger).send("sub00001", TEN, "below the floor")
    assert result.outcome is TransferOutcome.REFUSED
    assert result.action is not None
    assert "VONAGE_API_SECRET" in result.action
    assert "wrong-secret" not in f"{result}"


def test_only_4xx_answers_of_the_documented_kinds_are_definite() -> None:
    assert is_definite_refusal(NotFoundError("404", status=404))
    assert is_definite_refusal(ValidationError("422", status=422))
    assert not is_definite_refusal(ValidationError("error body under a 200", status=200))
    assert not is_definite_refusal(ServerError("500", status=500))
    assert not is_definite_refusal(RuntimeError("a bug"))


async def test_a_replica_without_the_lease_sends_nothing_and_writes_nothing(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    result = await make(vonage, ledger, Lease(answers=[False])).send("sub00001", TEN, "low")
    assert result.outcome is TransferOutcome.NOT_STARTED
    assert "lease" in result.detail
    assert result.entry is None
    assert await ledger.latest(10) == []
    assert fleet_sim.account.transfers == []


async def test_a_deposed_writer_is_fenced_by_the_ledger_and_sends_nothing(
    fleet_sim: RunningSimulator, vonage: VonageClient, tmp_path: Path
) -> None:
    path = tmp_path / "shared.sqlite"
    new, old = SqliteTransferLedger(path), SqliteTransferLedger(path)
    await make(vonage, new, Lease(epoch=8, holder="pod-b:1")).send("sub00002", TEN, "low")
    # The old holder still believes it holds the lease (a GC pause): the ledger refuses it.
    result = await make(vonage, old, Lease(epoch=7)).send("sub00001", TEN, "low")
    assert result.outcome is TransferOutcome.NOT_STARTED
    assert "fenced" in result.detail
    assert [t.to_key for t in fleet_sim.account.transfers] == ["sub00002"]
    await new.close()
    await old.close()


async def test_a_lease_lost_right_after_the_ledger_write_sends_nothing(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    result = await make(vonage, ledger, Lease(answers=[True, False])).send("sub00001", TEN, "low")
    assert result.outcome is TransferOutcome.NOT_STARTED
    assert result.entry is not None
    assert result.entry.state is TransferState.FAILED
    assert fleet_sim.account.transfers == []


async def test_a_lease_lost_before_a_resend_stops_the_resend(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="rate_limit")
    safe = make(vonage, ledger, Lease(answers=[True, True, False]))
    result = await safe.send("sub00001", TEN, "low")
    assert result.outcome is TransferOutcome.REFUSED
    assert result.requests == 1
    assert fleet_sim.account.transfers == []


async def test_a_dry_run_is_recorded_never_sent_and_never_counted(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = make(vonage, ledger, dry_run=True)
    for _ in range(3):
        result = await safe.send("sub00001", TEN, "would fund")
        assert result.outcome is TransferOutcome.DRY_RUN
    assert fleet_sim.account.transfers == []
    entries = await ledger.latest(10)
    assert [e.state for e in entries] == [TransferState.DRY_RUN] * 3
    caps = Caps(max_transfers_per_hour=1, max_daily_amount=TEN)
    got = allowance(entries, "sub00001", TEN, entries[-1].created_wall, account_rules=caps,
                    fleet_rules=caps)  # fmt: skip
    assert got.transfers == 1


async def test_a_crash_between_the_ledger_write_and_the_post_is_settled_by_listing_on_restart(
    fleet_sim: RunningSimulator, vonage: VonageClient, tmp_path: Path
) -> None:
    path = tmp_path / "state.sqlite"
    before = SqliteTransferLedger(path)
    wall = SystemClock().wall()
    await before.begin(account="sub00001", amount=TEN, reason="low", wall=wall, epoch=0,
                       holder="pod-a:1")  # fmt: skip
    await before.close()  # the process died here: PENDING, nothing sent
    after = SqliteTransferLedger(path)
    safe = make(vonage, after, SoleGuard("pod-a:2"), foreign_pending_s=0.5)
    assert await safe.settle_open() == [], "too soon: its sender might still be on the wire"
    refused = await safe.send("sub00001", TEN, "low")
    assert refused.outcome is TransferOutcome.NOT_STARTED
    await asyncio.sleep(0.5)
    (settled,) = await safe.settle_open()
    assert settled.state is TransferState.FAILED
    assert "the listing proves it did not happen" in settled.detail
    assert (await safe.send("sub00001", TEN, "low")).outcome is TransferOutcome.APPLIED
    assert len(fleet_sim.account.transfers) == 1
    await after.close()


async def test_a_crash_after_the_post_left_is_found_by_its_reference_and_never_resent(
    fleet_sim: RunningSimulator, vonage: VonageClient, tmp_path: Path
) -> None:
    path = tmp_path / "state.sqlite"
    before = SqliteTransferLedger(path)
    entry = await before.begin(account="sub00001", amount=TEN, reason="low",
                               wall=SystemClock().wall(), epoch=0, holder="pod-a:1")  # fmt: skip
    await vonage.transfer_balance(DEMO_API_KEY, "sub00001", TEN, entry.reference)
    await before.close()  # died before recording the answer
    after = SqliteTransferLedger(path)
    (settled,) = await make(vonage, after, SoleGuard("pod-a:2")).settle_open()
    assert settled.state is TransferState.SUCCEEDED
    assert settled.vonage_id == fleet_sim.account.transfers[0].id
    assert settled.applied_amount == TEN
    assert len(fleet_sim.account.transfers) == 1
    await after.close()


async def test_the_listing_asks_from_a_minute_before_the_entry_for_that_subaccount(
    fleet_sim: RunningSimulator, ledger: SqliteTransferLedger
) -> None:
    asked: list[tuple[str, str | None]] = []

    class Recording(VonageClient):
        async def list_balance_transfers(self, start_date, end_date=None, subaccount=None):  # type: ignore[no-untyped-def]
            asked.append((start_date, subaccount))
            return await super().list_balance_transfers(start_date, end_date, subaccount)

    async with Recording(DEMO_API_KEY, DEMO_API_SECRET, api_url=fleet_sim.url,
                         rest_url=fleet_sim.url) as vonage:  # fmt: skip
        await inject_fault(fleet_sim, endpoint="balance-transfers", kind="error_500_after")
        result = await make(vonage, ledger).send("sub00003", TEN, "low")
        await make(vonage, ledger).settle_open()
    assert result.entry is not None
    assert asked == [(iso_utc(result.entry.created_wall - 60), "sub00003")]
    assert asked[0][0].endswith("Z")


async def test_one_span_per_transfer_with_the_account_amount_and_outcome(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    safe = make(vonage, ledger, tracer=provider.get_tracer("test"))
    with caplog.at_level(logging.INFO, logger="topup_guard.fleet"):
        await safe.send("sub00002", TEN, "low")
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "transfer"]
    attrs = dict(span.attributes or {})
    assert attrs["transfer.account"] == "sub00002"
    assert attrs["transfer.amount"] == "10"
    assert attrs["transfer.outcome"] == "applied"
    assert DEMO_API_SECRET not in str(attrs)
    (record,) = [r for r in caplog.records if r.getMessage() == "transfer_applied"]
    assert record.account == "sub00002"  # type: ignore[attr-defined]
    provider.shutdown()


async def test_unconfirmed_transfers_count_in_the_caps(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = make(vonage, ledger, settle_window_s=0.0)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="reset_after")
    await inject_fault(fleet_sim, endpoint="balance-transfers-list", kind="error_500_after")
    await safe.send("sub00001", TEN, "low")
    (entry,) = await safe.settle_open()
    assert entry.state is TransferState.UNCONFIRMED
    caps = Caps(max_transfers_per_hour=5, max_daily_amount=Decimal(15))
    got = allowance(await ledger.since(entry.created_wall - DAY), "sub00001", TEN,
                    entry.created_wall, account_rules=caps, fleet_rules=caps)  # fmt: skip
    assert got.limited_by == ("account_daily_amount", "fleet_daily_amount")


async def test_a_transfer_without_a_reference_in_the_listing_keeps_the_doubt(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = make(vonage, ledger, settle_window_s=0.5)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="error_500_before")
    assert (await safe.send("sub00001", TEN, "low")).outcome is TransferOutcome.AMBIGUOUS
    await vonage.transfer_balance(DEMO_API_KEY, "sub00001", TEN)  # by hand, no reference
    await asyncio.sleep(0.3)
    assert await safe.settle_open() == [], "absence is not proved while a transfer is anonymous"
    await asyncio.sleep(0.3)
    (entry,) = await safe.settle_open()
    assert entry.state is TransferState.UNCONFIRMED
    assert "without a reference" in entry.detail


async def test_a_listing_made_too_soon_after_the_call_proves_nothing(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    safe = SafeTransfer(vonage, ledger, SoleGuard("test:1"), SystemClock(),
                        primary_key=DEMO_API_KEY)  # the production 5 s  # fmt: skip
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="error_500_before")
    result = await safe.send("sub00001", TEN, "low")
    assert result.outcome is TransferOutcome.AMBIGUOUS
    assert await safe.settle_open() == []
    (still,) = await ledger.in_doubt()
    assert still.state is TransferState.UNKNOWN
    assert fleet_sim.account.transfers == []


async def test_a_shutdown_during_the_wait_before_a_resend_ends_it_with_nothing_moved(
    fleet_sim: RunningSimulator, vonage: VonageClient, ledger: SqliteTransferLedger
) -> None:
    retry.set_testing(False)  # the real Retry-After wait (the fixture turns it back off)
    await inject_fault(fleet_sim, endpoint="balance-transfers", kind="rate_limit", retry_after=2)
    stop = asyncio.Event()
    stop.set()
    started = asyncio.get_running_loop().time()
    result = await make(vonage, ledger).send("sub00001", TEN, "low", stop=stop)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert result.outcome is TransferOutcome.REFUSED
    assert "shutdown" in result.detail
    assert fleet_sim.account.transfers == []
