"""The engine on a virtual clock: hours of polling in milliseconds, on the real account model."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from topup_guard import retry
from topup_guard.backtest import InProcessAccount, SampledClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, load_settings
from topup_guard.engine import Engine
from topup_guard.events import (
    Condition,
    ConditionsChanged,
    Outcome,
    Recorder,
    Started,
    Stopped,
    TopUpFinished,
)
from topup_guard.ledger.base import AttemptState
from topup_guard.ledger.sqlite import SqliteLedger
from topup_guard.sim.account import SimAccount
from topup_guard.sim.scenario import Scenario
from topup_guard.sim.spend import Phase, SpendProfile

HOUR = 3600.0


@pytest.fixture(autouse=True)
def _no_backoff() -> None:
    retry.set_testing(True)
    yield
    retry.set_testing(False)


def settings(tmp_path: Path, **extra: str) -> Settings:
    env = {
        "VONAGE_API_KEY": DEMO_API_KEY,
        "VONAGE_API_SECRET": DEMO_API_SECRET,
        "TOPUP_GUARD_TRX": DEMO_TRX,
        "TOPUP_GUARD_STATE_PATH": str(tmp_path / "ledger.db"),
        "TOPUP_GUARD_MIN_BALANCE": "10",
        "TOPUP_GUARD_POLL_MIN": "5",
        "TOPUP_GUARD_POLL_INTERVAL": "60",
    }
    env |= {f"TOPUP_GUARD_{k.upper()}": v for k, v in extra.items()}
    return load_settings(env)


def account(rate: str = "0.05", balance: str = "40", **kw: object) -> SimAccount:
    return SimAccount(
        api_key=DEMO_API_KEY,
        api_secret=DEMO_API_SECRET,
        trx=DEMO_TRX,
        balance=Decimal(balance),
        topup_amount=Decimal("50"),
        autoreload_threshold=Decimal("5"),
        spend=SpendProfile((Phase(0, 1e9, Decimal(rate)),)),
        message_price=Decimal("0.01"),
        **kw,  # type: ignore[arg-type]
    )


class Rig:
    def __init__(self, tmp_path: Path, acct: SimAccount, **extra: str) -> None:
        self.account = acct
        self.clock = SampledClock(acct)
        self.api = InProcessAccount(self.account, self.clock, Scenario.from_dict(
            {"initial_balance": 1, "topup_amount": 50, "autoreload_threshold": 5,
             "topup_latency_s": 1, "balance_latency_s": 0.2}))  # fmt: skip
        self.settings = settings(tmp_path, **extra)
        self.ledger = SqliteLedger(self.settings.state_path, account=DEMO_API_KEY)
        self.events = Recorder()
        self.engine = Engine(
            api=self.api, ledger=self.ledger, clock=self.clock, settings=self.settings,
            sink=self.events,
        )  # fmt: skip

    async def run_for(self, seconds: float) -> None:
        await self.engine.run(asyncio.Event(), until=self.clock.now() + seconds)

    def topups(self) -> list[TopUpFinished]:
        return [e for e in self.events.events if isinstance(e, TopUpFinished)]

    def conditions_seen(self) -> set[Condition]:
        seen: set[Condition] = set()
        for e in self.events.events:
            if isinstance(e, ConditionsChanged):
                seen |= set(e.active)
        return seen


async def test_tops_up_before_forecast_exhaustion(tmp_path: Path) -> None:
    rig = Rig(tmp_path, account(rate="0.05", balance="40"))
    await rig.run_for(2 * HOUR)  # 360 EUR of demand against 40 EUR
    assert rig.account.failed_events == 0
    assert rig.account.exhausted_seconds == 0
    assert len(rig.account.topups) >= 6
    assert all(t.outcome is Outcome.SUCCEEDED for t in rig.topups())
    assert rig.engine.status.balance is not None
    assert rig.engine.status.balance > 0


async def test_does_not_top_up_a_healthy_idle_account(tmp_path: Path) -> None:
    rig = Rig(tmp_path, account(rate="0", balance="40"))
    await rig.run_for(HOUR)
    assert rig.account.topups == []
    assert rig.api.calls <= HOUR / 60 + 5  # slow polling when nothing happens


async def test_polls_fewer_times_when_healthy_than_when_draining(tmp_path: Path) -> None:
    calm = Rig(tmp_path / "calm", account(rate="0.001", balance="500"))
    await calm.run_for(HOUR)
    busy = Rig(tmp_path / "busy", account(rate="0.2", balance="40"))
    await busy.run_for(HOUR)
    assert calm.api.calls < busy.api.calls


async def test_auto_reload_off_means_no_top_up_and_an_alert(tmp_path: Path) -> None:
    rig = Rig(tmp_path, account(rate="0.05", balance="20", auto_reload=False))
    await rig.run_for(HOUR)
    assert rig.account.topups == []
    assert rig.topups() == []
    assert Condition.AUTORELOAD_DISABLED in rig.conditions_seen()
    assert Condition.EXHAUSTION_FORECAST in rig.conditions_seen()


async def test_dry_run_decides_and_reports_but_never_calls_top_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, account(rate="0.05", balance="20"), dry_run="true")
    await rig.run_for(HOUR)
    assert rig.account.topups == []
    dry = [t for t in rig.topups() if t.outcome is Outcome.DRY_RUN]
    assert dry, "the dry run must report what it would have done"
    # Its would-be top-ups never use up the caps: it keeps saying what it would do all hour,
    # audited at most once per poll interval.
    assert len(dry) > rig.settings.max_topups_per_hour
    assert len(dry) <= HOUR / rig.settings.poll_interval + 1
    assert dry[-1].wall - dry[0].wall > HOUR - 5 * rig.settings.poll_interval
    states = {a.state for a in await rig.ledger.latest(100)}
    assert states == {AttemptState.DRY_RUN}


async def test_hourly_cap_counted_from_the_ledger_survives_a_restart(tmp_path: Path) -> None:
    acct = account(rate="0.5", balance="20")  # needs a top-up every ~100 s
    first = Rig(tmp_path, acct, max_topups_per_hour="3")
    await first.run_for(600)
    assert len(acct.topups) == 3
    await first.ledger.close()
    second = Rig(tmp_path, acct, max_topups_per_hour="3")  # same ledger file, fresh memory
    second.clock.advance(first.clock.now())
    await second.run_for(600)
    assert len(acct.topups) == 3, "a restart must not reset the cap"
    assert Condition.CAP_REACHED in second.conditions_seen()


async def test_breaker_opens_after_consecutive_failed_top_ups(tmp_path: Path) -> None:
    acct = account(rate="0.05", balance="12")
    acct.fail_payments = 2  # two refused payments (a third would disable auto-reload)
    rig = Rig(tmp_path, acct, breaker_threshold="2", breaker_cooldown="3600")
    await rig.run_for(1800)
    outcomes = [t.outcome for t in rig.topups()]
    assert outcomes[:2] == [Outcome.FAILED, Outcome.FAILED]
    assert Outcome.SUCCEEDED not in outcomes, "the breaker must hold during its cooldown"
    assert Condition.BREAKER_OPEN in rig.conditions_seen()
    failed = rig.topups()[0]
    assert failed.action_needed
    assert "payment" in failed.action_needed


async def test_breaker_allows_a_trial_after_the_cooldown(tmp_path: Path) -> None:
    acct = account(rate="0.02", balance="12")
    acct.autoreload_threshold = Decimal(0)  # Vonage's own reload must not rescue the account
    acct.fail_payments = 2
    rig = Rig(tmp_path, acct, breaker_threshold="2", breaker_cooldown="600")
    await rig.run_for(1800)
    assert [t.outcome for t in rig.topups()][-1] is Outcome.SUCCEEDED


async def test_pending_entry_from_a_crash_is_reconciled_before_any_new_top_up(
    tmp_path: Path,
) -> None:
    acct = account(rate="0.01", balance="8")  # below the floor: the policy wants a top-up
    rig = Rig(tmp_path, acct)
    # A previous run wrote PENDING, sent the POST (Vonage applied it) and died.
    await rig.ledger.begin(
        balance_before=Decimal("8"),
        expected_amount=Decimal("50"),
        reason="crashed run",
        wall=rig.clock.wall(),
        epoch=0,
        holder="old",
    )
    acct.top_up(DEMO_TRX, 0.0)
    await rig.run_for(120)
    first = rig.topups()[0]
    assert first.outcome is Outcome.SUCCEEDED
    assert first.evidence
    assert "balance step" in first.evidence
    assert len(acct.topups) == 1, "the reconciled top-up must not be repeated"


async def test_pending_entry_never_sent_is_marked_unconfirmed_not_repeated_blindly(
    tmp_path: Path,
) -> None:
    acct = account(rate="0.0", balance="30")
    rig = Rig(tmp_path, acct, settle_window="30")
    await rig.ledger.begin(balance_before=Decimal("30"), expected_amount=Decimal("50"),
                           reason="crashed before send", wall=rig.clock.wall(), epoch=0,
                           holder="old")  # fmt: skip
    await rig.run_for(120)
    assert rig.topups()[0].outcome is Outcome.UNCONFIRMED
    assert acct.topups == []
    assert Condition.UNCONFIRMED_TOPUP in rig.conditions_seen()


async def test_the_poll_period_does_not_drift(tmp_path: Path) -> None:
    rig = Rig(tmp_path, account(rate="0", balance="1000"))
    await rig.run_for(10 * 60.0 + 1)
    polls = rig.api.calls
    # Steady state polls every POLL_INTERVAL from the scheduled start, despite 0.2 s reads.
    assert polls == pytest.approx(11, abs=2)


async def test_stop_wakes_the_sleep_and_reports_stopped(tmp_path: Path) -> None:
    from topup_guard.clock import SystemClock

    rig = Rig(tmp_path, account(rate="0", balance="1000"))
    rig.engine._clock = SystemClock()  # real time: a 60 s sleep must end at once on stop
    stop = asyncio.Event()
    task = asyncio.create_task(rig.engine.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert isinstance(rig.events.events[0], Started)
    assert isinstance(rig.events.events[-1], Stopped)


async def test_dry_run_records_nothing_while_a_top_up_is_not_yet_due(tmp_path: Path) -> None:
    # 200 EUR at 0.2 EUR/s runs out in ~1000 s, inside a 1200 s horizon: worth a warning in a
    # dry run, but the floor is far away, so a real guard would not top up yet and the dry run
    # must not record that it would have.
    rig = Rig(tmp_path, account(rate="0.2", balance="200"), dry_run="true", horizon="1200")
    await rig.run_for(120)
    assert rig.topups() == []
    assert Condition.EXHAUSTION_FORECAST in rig.conditions_seen()


async def test_an_open_breaker_is_announced_with_the_time_it_clears(tmp_path: Path) -> None:
    acct = account(rate="0.05", balance="12")
    acct.fail_payments = 2
    rig = Rig(tmp_path, acct, breaker_threshold="2", breaker_cooldown="3600")
    await rig.run_for(600)
    opened = [
        e for e in rig.events.events
        if isinstance(e, ConditionsChanged) and Condition.BREAKER_OPEN in e.active
    ]  # fmt: skip
    assert opened
    last_failure = max(t.wall for t in rig.topups() if t.outcome is Outcome.FAILED)
    clears = opened[-1].clears_at[Condition.BREAKER_OPEN]
    assert clears == pytest.approx(last_failure + 3600, abs=5)  # the cooldown after the last one
