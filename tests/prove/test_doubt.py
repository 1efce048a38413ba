"""Issue 9, on virtual time over real sockets: doubt never drains the account.

Each test reproduces one case of the issue against the simulator with the issue's own settings
(``POLL_INTERVAL=1 POLL_MIN=0.5 MIN_BALANCE=1 TOPUP_AMOUNT=10``, the rest the product's defaults,
caps and breaker lax where they are not the point) and asserts its "Done when": no demand
refused, the ledger's SUCCEEDED attempts equal the credits the account received, ``credited``
equal to the real credit, nothing left unresolved, no more credits than the need plus one.
The real-process cases (SIGTERM, kill -9, empty files, the CLI) are in ``test_doubt_process``.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.doubtrig import (
    Outcome,
    PostStep,
    Script,
    control,
    money_truth,
    run,
    sim_fault,
)
from topup_guard import limits
from topup_guard.events import Outcome as Said
from topup_guard.ledger.base import AttemptState
from topup_guard.policy.decide import Action
from topup_guard.sim.context import SimContext

LAX = {
    "max_topups_per_hour": "100",
    "max_topups_per_day": "100",
    "max_daily_amount": "100000",
    "breaker_threshold": "10",
}
ISSUE9: dict[str, str | None] = {
    "poll_interval": "1",
    "poll_min": "0.5",
    "min_balance": "1",
    "topup_amount": "10",
    **LAX,
}
NOT_APPLIED = ("error_500_before", "reset_before", "html_error", "redirect")
APPLIED = ("error_500_after", "timeout_after", "reset_after", "malformed_json")


def env(**extra: str | None) -> dict[str, str | None]:
    return {**ISSUE9, **extra}


def not_applied_at(n: int) -> Script:
    """The n-th top-up answers HTTP 500 without having been applied."""
    return Script(before_post={n: [sim_fault("top-up", "error_500_before")]})


def reasons(o: Outcome) -> list[str]:
    return [p.decision.reason for p in o.polls() if p.decision.action is Action.TOP_UP]


@pytest.mark.parametrize("kind", NOT_APPLIED[:2] + APPLIED[:2])
async def test_a_burst_with_one_ambiguous_answer_refuses_nothing_and_invents_no_credit(
    kind: str, tmp_path: Path, tally: Tally
) -> None:
    # 12 EUR at 0.6 EUR/s, the second top-up's answer ambiguous (applied or not).
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90, env=env(),
                  script=Script(before_post={2: [sim_fault("top-up", kind)]}))  # fmt: skip
    second = o.attempts[1]
    if kind in NOT_APPLIED:
        assert second.state is AttemptState.UNCONFIRMED, o.describe()
    else:
        assert second.state is AttemptState.SUCCEEDED
        assert second.credited == Decimal(10)
    assert o.refused == 0, f"{o.refused} EUR of demand refused:\n{o.describe()}"
    assert len(o.succeeded) == o.applied, o.describe()
    money_truth(o, tally, initial="12", amount="10")
    tally.add("ambiguous_answers")


async def test_exhaustion_beats_doubt_while_verification_would_outlast_the_balance(
    tmp_path: Path, tally: Tally
) -> None:
    # A slow credit latency makes the verification window 45 s, longer than the balance lasts.
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90,
                  env=env(topup_latency="15"), script=not_applied_at(2))  # fmt: skip
    beats = [r for r in reasons(o) if "exhaustion beats doubt" in r]
    assert beats, f"no top-up was made despite the doubt:\n{o.describe()}"
    assert o.refused == 0, f"{o.refused} EUR refused:\n{o.describe()}"
    assert len(o.succeeded) == o.applied
    money_truth(o, tally, initial="12", amount="10")
    tally.add("topups_despite_doubt", len(beats))


async def test_on_doubt_wait_keeps_the_cautious_behaviour(tmp_path: Path, tally: Tally) -> None:
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90,
                  env=env(topup_latency="15", on_doubt="wait"),
                  script=not_applied_at(2))  # fmt: skip
    assert not [r for r in reasons(o) if "exhaustion beats doubt" in r]
    assert any("TOPUP_GUARD_ON_DOUBT=wait" in p.decision.reason for p in o.polls())
    assert len(o.succeeded) == o.applied, o.describe()
    assert o.unresolved == 0
    tally.add("wait_runs")
    tally.add("wait_refused_eur", float(o.refused))


@pytest.mark.parametrize("amount_known", [True, False], ids=["amount_set", "amount_unset"])
async def test_ambiguous_answers_for_top_ups_never_applied_never_end_succeeded(
    amount_known: bool, tmp_path: Path, tally: Tally
) -> None:
    # Six not-applied ambiguous answers (every other top-up), the rest answered normally.
    kinds = [*NOT_APPLIED, "error_500_before", "reset_before"]
    faults: dict[int, list[PostStep]] = {
        2 * i + 2: [sim_fault("top-up", k)] for i, k in enumerate(kinds)
    }
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=240,
                  env=env(topup_amount="10" if amount_known else None),
                  script=Script(before_post=faults))  # fmt: skip
    doubted = [o.attempts[n - 1] for n in faults]
    assert [a.state for a in doubted] == [AttemptState.UNCONFIRMED] * 6, o.describe()
    assert all(a.credited is None for a in doubted)
    assert len(o.succeeded) == o.applied, o.describe()
    assert o.refused == 0, o.describe()
    money_truth(o, tally, initial="12", amount="10")
    tally.add("ambiguous_answers", 6)
    learnt = o.engine.settlement.amount()
    tally.set(f"learnt_amount_{'set' if amount_known else 'unset'}", float(learnt or 0))


async def test_a_credit_that_lands_later_than_the_window_is_still_recognised(
    tmp_path: Path, tally: Tally
) -> None:
    def slow(ctx: SimContext) -> None:
        ctx.account.credit_delay_s = 20.0  # past the 15 s verification window

    def fast(ctx: SimContext) -> None:
        ctx.account.credit_delay_s = 0.0

    script = Script(before_post={2: [sim_fault("top-up", "timeout_after"), slow]},
                    after_post={2: fast})  # fmt: skip
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90, env=env(),
                  script=script)  # fmt: skip
    late = o.attempts[1]
    assert late.state is AttemptState.SUCCEEDED, o.describe()
    assert late.credited == Decimal(10), o.describe()
    assert "late" in (late.evidence or "")
    assert o.refused == 0
    assert len(o.succeeded) == o.applied
    money_truth(o, tally, initial="12", amount="10")
    tally.add("late_credits_recognised")


async def test_a_credit_while_the_balance_is_at_zero_teaches_the_real_amount(
    tmp_path: Path, tally: Tally
) -> None:
    # TOPUP_AMOUNT unset (the quick start); the balance is at 0 when the first credit shows.
    o = await run(tmp_path, balance="0.5", rate="0.6", amount="50", seconds=200,
                  env=env(topup_amount=None), credit_delay_s=2.0,
                  script=not_applied_at(3))  # fmt: skip
    check_learnt(o, tally, initial="0.5")
    # Only the demand before the first credit could land (0.5 EUR at 0.6 EUR/s, 2 s delay).
    assert o.refused <= Decimal("1.5"), o.describe()
    tally.add("refused_before_first_credit_eur", float(o.refused))


async def test_a_burst_to_zero_and_back_with_the_amount_unset_learns_the_real_amount(
    tmp_path: Path, tally: Tally
) -> None:
    script = Script(
        at=[(20.0, control(spend_rate="6")), (35.0, control(spend_rate="0.4"))],
        before_post={3: [sim_fault("top-up", "error_500_before")]},
    )
    o = await run(tmp_path, balance="30", rate="0.2", amount="50", seconds=300,
                  env=env(topup_amount=None), credit_delay_s=5.0, script=script,
                  peak_rate="6")  # fmt: skip
    check_learnt(o, tally, initial="30")
    tally.add("burst_refused_eur", float(o.refused))


def check_learnt(o: Outcome, tally: Tally, *, initial: str) -> None:
    detail = o.describe()
    assert o.engine.settlement.amount() == Decimal(50), f"learnt {o.engine.settlement.amount()}"
    tiny = [r for r in reasons(o) if "× 0." in r or "× 1." in r]
    assert not tiny, f"a decision used a tiny learnt amount: {tiny[:2]}"
    charged = Decimal(50) * o.applied
    assert o.charged_counted >= charged, (
        f"the daily EUR cap counted {o.charged_counted} EUR after {charged} EUR charged"
    )
    said = [e for e in o.finished() if e.outcome is Said.SUCCEEDED]
    assert len(said) == o.applied, f"announced {len(said)} top-ups for {o.applied}:\n{detail}"
    assert o.attempts[2].state is AttemptState.UNCONFIRMED, detail  # the not-applied 500
    assert len(o.succeeded) == o.applied, detail
    money_truth(o, tally, initial=initial, amount="50")
    tally.set("learnt_amount_eur", float(o.engine.settlement.amount() or 0))
    tally.peak("cap_counted_eur", float(o.charged_counted))


async def test_vonage_auto_reload_during_verification_is_named_in_the_evidence(
    tmp_path: Path, tally: Tally
) -> None:
    def no_more(ctx: SimContext) -> None:
        ctx.account.autoreload_threshold = Decimal(0)

    # Vonage's own check runs at t=3 s (once: the threshold is lowered right after), while
    # the second top-up (a not-applied 500 at t=1.5 s) is being verified.
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=60, env=env(),
                  check_s=3.0, autoreload_threshold="1000",
                  script=Script(at=[(3.2, no_more)], before_post=not_applied_at(2).before_post),
                  )  # fmt: skip
    assert o.autoreloads == 1, o.describe()
    second = o.attempts[1]
    if second.state is AttemptState.SUCCEEDED:
        assert "auto-reload" in (second.evidence or ""), second.evidence
        assert len(o.succeeded) == o.applied + o.autoreloads
    else:
        assert second.state is AttemptState.UNCONFIRMED
        assert len(o.succeeded) == o.applied
    assert o.refused == 0
    money_truth(o, tally, initial="12", amount="10")
    tally.add("autoreloads_during_verification")


async def test_a_200_with_error_code_500_for_an_applied_top_up_is_verified_and_capped(
    tmp_path: Path, tally: Tally
) -> None:
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=60, env=env(),
                  rewrite_topups={2})  # fmt: skip
    second = o.attempts[1]
    assert second.state is AttemptState.SUCCEEDED, f"recorded {second.state}:\n{o.describe()}"
    assert second.credited == Decimal(10)
    assert not (second.evidence or "api").startswith("api"), "verified by balance, not by the API"
    use = limits.usage(o.attempts, o.wall)
    assert use.last_hour == o.applied, "every applied top-up counts against the caps"
    assert use.amount_last_day >= Decimal(10) * o.applied
    assert o.refused == 0
    money_truth(o, tally, initial="12", amount="10")
    tally.add("error_code_500_answers")


async def test_retry_after_120_on_a_top_up_ends_the_retry_instead_of_sleeping(
    tmp_path: Path, tally: Tally
) -> None:
    f = sim_fault("top-up", "rate_limit", retry_after=120)
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90, env=env(),
                  script=Script(before_post={2: [f]}))  # fmt: skip
    second = o.attempts[1]
    assert second.state is AttemptState.FAILED, o.describe()  # a 429 applies nothing
    posts = o.api.post_times
    reads_after = [t for t in o.api.read_times if t > posts[1]]
    waited = reads_after[0] - posts[1]
    assert waited <= 30.0, f"the guard slept {waited:.1f} s on a Retry-After of 120 s"
    assert o.refused == 0
    money_truth(o, tally, initial="12", amount="10")
    tally.peak("longest_wait_after_429_s", round(waited, 2))


async def test_retry_after_120_on_a_balance_read_never_stops_polling_beyond_the_budget(
    tmp_path: Path, tally: Tally
) -> None:
    f = sim_fault("get-balance", "rate_limit", retry_after=120)
    o = await run(tmp_path, balance="12", rate="0.6", amount="10", seconds=90, env=env(),
                  script=Script(at=[(10.0, lambda ctx: ctx.faults.add(f))]))  # fmt: skip
    times = o.api.read_times
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert o.api.read_errors >= 1, "the throttled read must have been met"
    assert gap <= 20.0, f"polling stopped for {gap:.1f} s on one throttled read"
    assert o.refused == 0, f"{o.refused} EUR refused while the guard was deaf"
    money_truth(o, tally, initial="12", amount="10")
    tally.peak("longest_poll_gap_after_429_s", round(gap, 2))


async def test_a_dry_run_never_uses_up_its_caps_and_keeps_reporting(
    tmp_path: Path, tally: Tally
) -> None:
    # The default caps (4 an hour), a balance falling for ten minutes: every would-be top-up
    # is audited, none counts, the dry run says what it would do to the end.
    o = await run(tmp_path, balance="12", rate="0.015", amount="10", seconds=600,
                  env={"poll_interval": "5", "poll_min": "0.5", "topup_amount": "10",
                       "dry_run": "true"})  # fmt: skip
    dry = [a for a in o.attempts if a.state is AttemptState.DRY_RUN]
    assert o.applied == 0
    assert o.api.posts == 0
    assert len(dry) > 4, f"only {len(dry)} would-be top-ups audited"
    assert len(o.attempts) == len(dry)
    last = o.polls()[-1].decision
    assert last.blocked_by == "dry_run", f"the dry run stopped reporting: {last.reason}"
    assert not any(p.decision.blocked_by == "caps" for p in o.polls())
    use = limits.usage(o.attempts, o.wall)
    assert (use.last_hour, use.amount_last_day) == (0, Decimal(0))
    tally.add("dry_run_audited", len(dry))
    tally.add("dry_run_topups_sent", o.api.posts)
