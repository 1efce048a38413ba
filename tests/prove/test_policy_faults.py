"""Issue 10, on virtual time over real sockets: the policy does not buy what is already bought.

Each case of the issue against the simulator (credit lag after Vonage's "200", stale reads, a
tiny learnt amount, a one-off debit, glitched and absurd values), each asserting the issue's
"Done when": no more top-ups than the balance needed (+1 only where a credit's arrival was in
doubt), no crash, the learnt amount equal to the real one, the ledger's ``credited`` equal to what
was credited, nothing left unresolved.

The issue's counts ("one covers the run", "nothing needed for eight minutes") were stated for a
guard that keeps nothing in hand; since the guard keeps a headroom (by default one top-up above
the floor, ``decide._headroom``) each case runs twice: with the default headroom, where "needed"
is what keeps that documented level (``Outcome.needed``), and with ``TOPUP_GUARD_MIN_HEADROOM=0``,
where the issue's own count must hold exactly.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.doubtrig import Outcome, Script, add_faults, control, money_truth, run, sim_fault
from topup_guard.events import Condition, ConditionsChanged
from topup_guard.ledger.base import AttemptState

HEADROOM = pytest.mark.parametrize("headroom", [None, "0"], ids=["headroom_default", "no_headroom"])
LAX = {
    "max_topups_per_hour": "100",
    "max_topups_per_day": "100",
    "max_daily_amount": "100000",
    "breaker_threshold": "10",
}


def alerted(o: Outcome, condition: Condition) -> bool:
    return any(condition in e.active for e in o.events.events if isinstance(e, ConditionsChanged))


@pytest.mark.parametrize(
    ("lag", "timing"),
    [(3.0, {"poll_min": "1"}), (6.0, {})],
    ids=["lag3s_poll_min1", "lag6s_defaults"],
)
@HEADROOM
async def test_a_confirmed_credit_that_shows_late_is_not_bought_again(
    lag: float, timing: dict[str, str], headroom: str | None, tmp_path: Path, tally: Tally
) -> None:
    # 6 EUR at 0.3 EUR/s, 50 EUR top-ups: one buys a minute or more. The issue saw four charges
    # within 3 s (lag 3 s) and two 5 s apart (lag 6 s): bought again while on their way.
    o = await run(tmp_path, balance="6", rate="0.3", amount="50", seconds=90,
                  env={"topup_amount": "50", "min_headroom": headroom, **LAX, **timing},
                  credit_delay_s=lag)  # fmt: skip
    times = [t for t, _ in o.account.topups]
    rebought = [b for a, b in itertools.pairwise(times) if b - a <= lag + 1.0]
    if headroom == "0":
        assert not rebought, f"charged again while a credit was on its way:\n{o.describe()}"
    else:
        # A second charge while the first is on its way is the headroom (one top-up in hand
        # above the floor), never a re-buy of it: the decision counted the credit in flight.
        for a in o.attempts[1:]:
            if a.created_wall - o.attempts[0].created_wall <= lag + 1.0:
                assert "50.00 EUR confirmed and on its way" in a.reason, a.reason
    assert o.succeeded[0].credited == Decimal(50), o.describe()
    assert o.refused == 0
    money_truth(o, tally, initial="6", amount="50", slack=0)
    tally.add("credit_lag_runs")


@HEADROOM
@pytest.mark.parametrize("amount_known", [True, False], ids=["amount_set", "amount_unset"])
async def test_stale_reads_after_a_top_up_buy_nothing_more_and_record_the_real_credit(
    amount_known: bool, headroom: str | None, tmp_path: Path, tally: Tally
) -> None:
    # Right after the top-up, three reads are answered from a cache 10, 15 and 20 s old.
    stale = [sim_fault("get-balance", "stale", delay=d) for d in (10, 15, 20)]
    o = await run(tmp_path, balance="12", rate="0.05", amount="10", seconds=90,
                  env={"topup_amount": "10" if amount_known else None, "poll_min": "1",
                       "min_headroom": headroom, **LAX},
                  script=Script(after_post={1: add_faults(*stale)}))  # fmt: skip
    if headroom == "0":
        assert o.applied == 1, f"{o.applied} charges where one was needed:\n{o.describe()}"
    first = o.attempts[0]
    assert first.state is AttemptState.SUCCEEDED
    assert first.credited == Decimal(10), (
        f"the ledger recorded credited={first.credited} for a 10 EUR credit that did show:"
        f"\n{o.describe()}"
    )
    assert o.engine.settlement.amount() == Decimal(10), "learnt a wrong amount"
    assert not alerted(o, Condition.CREDIT_MISSING), "a credit that showed was alerted missing"
    money_truth(o, tally, initial="12", amount="10", slack=0)
    tally.add("stale_reads_served", 3)


@pytest.mark.parametrize("cause", ["reset_before_applying", "credit_lag_2s"])
async def test_a_tiny_amount_is_never_learnt_and_never_buys_several_at_once(
    cause: str, tmp_path: Path, tally: Tally
) -> None:
    # TOPUP_AMOUNT unset (the Helm default); real top-ups are 10 EUR.
    script = Script()
    delay = 0.0
    if cause == "reset_before_applying":
        script = Script(before_post={1: [sim_fault("top-up", "reset_before")]})
    else:
        delay = 2.0
    o = await run(tmp_path, balance="12", rate="0.3", amount="10", seconds=120,
                  env={"topup_amount": None, "poll_min": "1", **LAX}, credit_delay_s=delay,
                  script=script)  # fmt: skip
    polls = o.polls()
    # Several at once only ever of a plausible amount (the headroom may want two real 10 EUR
    # top-ups); never several of a tiny "learnt" one (the issue: 3 x 0.03 EUR = three charges).
    multi = [p.decision.reason for p in polls if p.decision.count > 1
             and (o.engine.settlement.amount() or Decimal(0)) < Decimal(5)]  # fmt: skip
    assert not multi, f"several top-ups bought at once: {multi[:2]}"
    tiny = [p.decision.reason for p in polls if "× 0." in p.decision.reason]
    assert not tiny, f"a decision used a tiny amount: {tiny[:2]}"
    assert o.refused == 0
    money_truth(o, tally, initial="12", amount="10", slack=1)
    learnt = o.engine.settlement.amount()
    tally.set(f"learnt_amount_{cause}", float(learnt or 0))
    assert learnt == Decimal(10), f"learnt {learnt} EUR, the real amount is 10 EUR"


@HEADROOM
async def test_a_one_off_debit_is_reported_and_kept_out_of_the_rate(
    headroom: str | None, tmp_path: Path, tally: Tally
) -> None:
    # 60 EUR spending 0.02 EUR/s; a 40 EUR debit at t=20 s leaves 20 EUR: eight minutes to go.
    o = await run(tmp_path, balance="60", rate="0.02", amount="50", seconds=300,
                  env={"topup_amount": "50", "poll_interval": "5", "poll_min": "1",
                       "min_headroom": headroom, **LAX},
                  script=Script(at=[(20.0, control(debit="40"))]))  # fmt: skip
    if headroom == "0":
        assert o.applied == 0, f"{o.applied} top-ups for a one-off debit:\n{o.describe()}"
    lumps = o.engine.status.one_off_debits
    assert lumps, "the debit must be reported"
    assert Decimal(str(lumps[-1]["eur"])) >= Decimal(40), lumps
    assert alerted(o, Condition.ONE_OFF_DEBIT)
    last = o.polls()[-1].forecast
    assert last is not None
    assert last.rate < 0.05, f"the debit became a rate: {last.rate}"
    assert o.refused == 0
    money_truth(o, tally, initial="60", amount="50", slack=0)
    tally.add("one_off_debits_eur", float(Decimal(str(lumps[-1]["eur"]))))


@HEADROOM
async def test_glitched_reads_buy_nothing(
    headroom: str | None, tmp_path: Path, tally: Tally
) -> None:
    # One read of 1E+2, then one of -1e-7, under lax caps.
    glitches = [sim_fault("get-balance", "value_glitch", value="1E+2"),
                sim_fault("get-balance", "value_glitch", value="-1e-7")]  # fmt: skip
    o = await run(tmp_path, balance="60", rate="0.02", amount="50", seconds=120,
                  env={"topup_amount": "50", "poll_interval": "5", "poll_min": "1",
                       "min_headroom": headroom, **LAX},
                  script=Script(at=[(20.0, add_faults(*glitches))]))  # fmt: skip
    assert o.ctx_faults_left() == 0, "both glitches must have been served"
    if headroom == "0":
        assert o.applied == 0, f"{o.applied} top-ups on two glitched reads:\n{o.describe()}"
    # Without headroom both are misreads; with it, 1E+2 is only 9.6 EUR under the real level and
    # the next glitch is nearer to it, so it may be believed (as a one-off debit): money is safe.
    assert o.engine.judge.misreads >= (2 if headroom == "0" else 1)
    money_truth(o, tally, initial="60", amount="50", slack=0)
    tally.add("glitched_reads", 2)
    tally.add("glitch_misreads_counted", o.engine.judge.misreads)


@HEADROOM
async def test_an_absurd_value_is_a_misread_never_a_crash(
    headroom: str | None, tmp_path: Path, tally: Tally
) -> None:
    absurd = sim_fault("get-balance", "value_absurd", count=5)
    o = await run(tmp_path, balance="30", rate="0.05", amount="50", seconds=120,
                  env={"topup_amount": "50", "poll_interval": "5", "poll_min": "1",
                       "min_headroom": headroom, **LAX},
                  script=Script(at=[(20.0, add_faults(absurd))]))  # fmt: skip
    assert o.ctx_faults_left() == 0
    assert o.engine.judge.misreads == 5
    assert alerted(o, Condition.BALANCE_MISREAD)
    assert o.polls()[-1].wall >= o.wall - 10, "the guard kept polling to the end"
    if headroom == "0":
        assert o.applied == 0
    money_truth(o, tally, initial="30", amount="50", slack=0)
    tally.add("absurd_values_survived", 5)
