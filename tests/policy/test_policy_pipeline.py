"""Property tests of the whole pure pipeline, strung together as ``Engine._observe`` / ``_take`` /
``_decide`` do: ReadingJudge -> CreditWatch -> SpendTracker -> decide().

Whatever the readings (absurd values, out-of-order times, glitches, stale answers, one-off
debits, credits nobody made), the pipeline never raises, never decides more than the caps allow,
and never buys more than the forecast needed + 1. Bought credits are the harness's truth: each
lands in the account after a lag and is confirmed money in flight until a rise shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from topup_guard import limits
from topup_guard.model import BalanceSample
from topup_guard.policy import (
    Action,
    Decision,
    GuardState,
    PolicyParams,
    SpendTracker,
    decide,
    time_to_level,
)
from topup_guard.policy.credits import CreditWatch, InFlight, LatencyModel
from topup_guard.policy.readings import Kind, ReadingJudge

D = Decimal
PARAMS = PolicyParams(
    min_balance=D(10),
    horizon=600.0,
    poll_min=1.0,
    poll_interval=60.0,
    topup_latency=5.0,
    safety_margin=30.0,
)
SETTLE_WINDOW = 60.0
NO_USE = limits.Usage(0, 0, D(0), 0, None)
PIPELINE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Pipeline:
    """The engine's pure rooms, in the engine's order; ``poll`` is one cycle."""

    amount: Decimal
    caps: limits.Limits
    lag: float  # seconds from Vonage's "200" to the credit in the balance
    # As the engine builds it: TOPUP_GUARD_MAX_PLAUSIBLE_BALANCE's default bounds a reading.
    judge: ReadingJudge = field(default_factory=lambda: ReadingJudge(D(1_000_000)))
    tracker: SpendTracker = field(default_factory=SpendTracker)
    watch: CreditWatch = field(default_factory=CreditWatch)
    latency: LatencyModel = field(
        default_factory=lambda: LatencyModel(PARAMS.topup_latency, SETTLE_WINDOW, PARAMS.poll_min)
    )
    spend: limits.LocalSpend = field(default_factory=limits.LocalSpend)
    believed: BalanceSample | None = None
    credits: list[tuple[float, Decimal]] = field(default_factory=list)  # (lands at, EUR)
    bought: list[float] = field(default_factory=list)
    max_need: int = 0  # the most top-ups the policy wanted, had the guard bought nothing

    def landed_by(self, t: float) -> Decimal:
        return sum((a for at, a in self.credits if at <= t), D(0))

    def poll(self, now: float, sample: BalanceSample) -> Decision:
        # Engine._observe
        before = self.tracker.forecast(now)
        # The worst rate in view bounds the spend a credit step may have hidden.
        rate = max(before.rate, before.peak_rate) if before else 0.0
        hint = before.rate if before else 0.0
        explained = self.believed is not None and self.watch.explains(self.believed, sample, rate)
        held = False
        for judged in self.judge.judge(sample, rise_explained=explained, rate_hint=hint):
            held = self._take(judged.kind, judged.sample, rate) or held
        forecast = self.tracker.forecast(now)
        # Settlement.expire: past its window a confirmed entry is no longer money on its way.
        self.watch.expire(now)
        # Engine._decide
        use = self.spend.merged(NO_USE, now)
        allowed = limits.topups_allowed(use, self.caps, self.amount)
        state = GuardState(
            auto_reload=True,
            topup_amount=self.amount,
            topups_allowed=allowed,
            breaker_open=False,
            in_flight=False,
            may_spend=True,
            dry_run=False,
            credit_in_flight=self.watch.confirmed_credit(),
            latency=self.latency.observed,
        )
        decision = decide(forecast, state, PARAMS, now)
        assert 0 <= decision.count <= allowed
        if forecast is not None:
            # What the policy itself would want had the guard bought nothing: the believed
            # balance without the bought credits already landed, nothing on its way.
            alone = replace(
                forecast,
                balance=forecast.balance - self.landed_by(forecast.t),
                time_to_exhaustion=time_to_level(
                    forecast.balance - self.landed_by(forecast.t), D(0), forecast.rate
                ),
            )
            unbought = replace(state, credit_in_flight=D(0), topups_allowed=10**6)
            need = decide(alone, unbought, PARAMS, now)
            if need.action is Action.TOP_UP:
                self.max_need = max(self.max_need, need.wanted)
        if held or decision.action is not Action.TOP_UP:
            return decision
        # Engine._act: every top-up is confirmed; its credit lands ``lag`` s later.
        for _ in range(decision.count):
            attempt_id = len(self.bought) + 1
            self.bought.append(now)
            self.spend.record(now, self.amount)
            self.credits.append((now + self.lag, self.amount))
            self.watch.add(
                InFlight(
                    attempt_id=attempt_id,
                    amount=self.amount,
                    sent_at=now,
                    confirmed=True,
                    deadline=now + SETTLE_WINDOW,
                    baseline=self.believed.balance if self.believed else None,
                )
            )
        return decision

    def _take(self, kind: Kind, sample: BalanceSample, rate: float) -> bool:
        """Engine._take; returns whether the reading is held."""
        if kind is Kind.HELD:
            return True
        if kind in (Kind.MISREAD, Kind.STALE):
            return False
        matched = D(0)
        if self.believed is not None:
            verdict = self.watch.on_step(self.believed, sample, rate)
            for m in verdict.matches:
                if m.entry.confirmed:
                    self.latency.observe(m.latency)
            matched = sum((m.credited for m in verdict.matches), D(0))
        if matched > 0:
            self.tracker.note_expected_credit(matched)
        try:
            self.tracker.add(sample, lump=kind is Kind.LUMP)
        except ValueError:
            return False
        self.believed = sample
        return False


# --- readings: the account's own history plus what can go wrong with reading it ---------------

dts = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 5.0, 10.0, 60.0]), st.floats(0, 3600))
absurd = st.one_of(
    st.decimals(min_value="-1e20", max_value="1e20", allow_nan=False, allow_infinity=False),
    st.sampled_from([D("1E+2"), D("-1e-7"), D("1e16"), D("1e20"), D("-1e20"), D(0)]),
)
steps = st.one_of(
    st.tuples(st.just("flow"), dts, st.decimals(min_value="0", max_value="60", places=4)),
    st.tuples(st.just("rise"), dts, st.decimals(min_value="0", max_value="500", places=2)),
    st.tuples(st.just("glitch"), dts, absurd),
    st.tuples(st.just("stale"), dts, st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("back"), dts, st.floats(min_value=0.001, max_value=600)),
)


def run(
    seq: list[tuple[str, float, object]], amount: Decimal, caps: limits.Limits, lag: float
) -> Pipeline:
    p = Pipeline(amount=amount, caps=caps, lag=lag)
    now, base = 0.0, D(100)
    history: list[tuple[float, Decimal]] = [(now, base)]  # (t, balance without the guard)
    p.poll(now, BalanceSample(now, base))
    for kind, dt, x in seq:
        now += dt
        t = now
        if kind == "flow":
            base -= D(str(x))
            history.append((now, base))
            value = base + p.landed_by(now)
        elif kind == "rise":
            base += D(str(x))
            history.append((now, base))
            value = base + p.landed_by(now)
        elif kind == "glitch":
            value = D(str(x))
        elif kind == "stale":  # a cached answer from a few readings ago, served now
            assert isinstance(x, int)
            then, old = history[max(0, len(history) - 1 - x)]
            value = old + p.landed_by(then)
        else:  # an answer stamped earlier than the latest one (reordered)
            assert isinstance(x, float)
            t = now - x
            value = base + p.landed_by(t)
        p.poll(now, BalanceSample(t, value))
    return p


caps_st = st.builds(
    lambda hour, day, eur: limits.Limits(hour, max(hour, day), D(eur), 3, 600.0),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=5000),
)


@PIPELINE
@given(
    seq=st.lists(steps, max_size=80),
    amount=st.sampled_from([D(5), D(10), D(50)]),
    caps=caps_st,
    lag=st.floats(min_value=0, max_value=SETTLE_WINDOW),
)
def test_no_sequence_of_readings_breaks_the_caps_or_raises(
    seq: list[tuple[str, float, object]], amount: Decimal, caps: limits.Limits, lag: float
) -> None:
    p = run(seq, amount, caps, lag)  # decide() within the caps is asserted at every poll
    for i, t in enumerate(p.bought):
        in_hour = [b for b in p.bought[: i + 1] if b > t - limits.HOUR]
        assert len(in_hour) <= caps.max_per_hour
        assert len(p.bought[: i + 1]) <= caps.max_per_day
    assert amount * len(p.bought) <= caps.max_daily_amount


LAX = limits.Limits(1000, 10_000, D(10**9), 3, 600.0)


@PIPELINE
@given(
    seq=st.lists(steps, max_size=80),
    amount=st.sampled_from([D(5), D(10), D(50)]),
    lag=st.floats(min_value=0, max_value=SETTLE_WINDOW / 2),
)
@example(  # a reverted glitch, then a cached answer: each rise "settles" a credit still on its way
    seq=[
        ("flow", 5.0, D(0)),
        ("flow", 60.0, D("3.52")),
        ("glitch", 0.0, D(0)),
        ("flow", 5.0, D(0)),
        ("stale", 0.5, 2),
        ("glitch", 5.0, D("-1E-7")),
    ],
    amount=D(5),
    lag=11.0,
).via("discovered failure")
def test_no_sequence_of_readings_buys_more_than_the_forecast_needed_plus_one(
    seq: list[tuple[str, float, object]], amount: Decimal, lag: float
) -> None:
    p = run(seq, amount, LAX, lag)
    assert len(p.bought) <= p.max_need + 1, (len(p.bought), p.max_need, p.bought)


# --- glitches against the same account without them -------------------------------------------

# Start-up: each poll sees a credit of the top-ups bought one at a time, then one glitch.
START_UP_FLOW = [
    (1.0, D("1.43")),
    (5.0, D("2.69")),
    (30.0, D("1.41")),
    (10.0, D("0.12")),
    (30.0, D("0.00")),
    (1.0, D("0.03")),
    (1.0, D("0.02")),  # the glitch replaces this reading
    (1.0, D("0.02")),
]
flow_steps = st.lists(
    st.tuples(
        st.sampled_from([1.0, 5.0, 10.0, 30.0]), st.decimals(min_value="0", max_value="3", places=2)
    ),
    min_size=8,
    max_size=60,
)


def run_flow(
    flow: list[tuple[float, Decimal]],
    glitches: dict[int, Decimal],
    amount: Decimal,
    lag: float,
) -> Pipeline:
    """A spending account read every few seconds; ``glitches[i]`` replaces reading i's value
    (one wrong answer, the next one right again)."""
    p = Pipeline(amount=amount, caps=LAX, lag=lag)
    now, base = 0.0, D(60)
    p.poll(now, BalanceSample(now, base))
    for i, (dt, drop) in enumerate(flow):
        now += dt
        base -= drop
        value = glitches.get(i, base + p.landed_by(now))
        p.poll(now, BalanceSample(now, value))
    return p


# Derandomized: CI must be repeatable. It found, at random, the one counterexample below (kept
# as a strict xfail until the policy answers it); a fixed seed still covers every shape here.
@settings(PIPELINE, derandomize=True)
@given(
    flow=flow_steps,
    where=st.lists(st.integers(min_value=5, max_value=59), max_size=4, unique=True),
    values=st.lists(absurd, min_size=4, max_size=4),
    amount=st.sampled_from([D(10), D(50)]),
    lag=st.floats(min_value=0, max_value=10),
)
@example(  # issue 10: "1E+2 then -1e-7" under lax caps
    flow=[(5.0, D("0.1"))] * 30,
    where=[10, 12],
    values=[D("1E+2"), D("-1e-7"), D(0), D(0)],
    amount=D(10),
    lag=2.0,
)
@example(  # every gap so far showed a credit: the judge has no history and holds nothing
    flow=START_UP_FLOW, where=[6], values=[D(-2564), D(0), D(0), D(0)], amount=D(10), lag=0.0
).via("discovered failure")
@example(  # an 8 EUR low reading within 8 x the burst rate is believed as spend
    flow=[(1.0, D(0)), (1.0, D(2))] + [(1.0, D(0))] * 6,
    where=[5],
    values=[D(100), D(0), D(0), D(0)],
    amount=D(50),
    lag=0.0,
).via("discovered failure")
@example(  # a low reading within 4 x the rate over a 30-s gap, believed, then taken back: it
    # stayed in the rate and the peak, and the headroom bought at every poll (5 for 0)
    flow=[(1.0, D(0))] * 3
    + [(1.0, D("0.48")), (5.0, D("2.39"))]
    + [(30.0, D(0))] * 2
    + [(1.0, D(0))] * 3,
    where=[5],
    values=[D(19), D("1E+2"), D("1E+2"), D("1E+2")],
    amount=D(10),
    lag=0.0,
).via("discovered failure")
def test_isolated_glitches_buy_at_most_one_top_up_more_than_the_clean_readings(
    flow: list[tuple[float, Decimal]],
    where: list[int],
    values: list[Decimal],
    amount: Decimal,
    lag: float,
) -> None:
    glitches = {i: v for i, v in zip(where, values, strict=False) if i < len(flow)}
    # Isolated: the reading after a glitch is right (two in a row are a different story).
    glitches = {i: v for i, v in glitches.items() if i - 1 not in glitches}
    clean = run_flow(flow, {}, amount, lag)
    glitched = run_flow(flow, glitches, amount, lag)
    assert len(glitched.bought) <= len(clean.bought) + glitch_allowance(clean, glitched, glitches)


def glitch_allowance(clean: Pipeline, glitched: Pipeline, glitches: dict[int, Decimal]) -> int:
    """The top-ups one isolated glitch may add, and why (each measured, none a storm).

    - One decision on the glitch itself, if it was believed: a low reading within what a burst
      might do buys what a burst that deep would need (the next reading takes it back, and the
      forecast is corrected: it no longer stays in the rate and the peak, issue 10's run).
    - One more when that extra credit, or a held reading, makes the headroom one top-up short.
    - The headroom a longer learnt credit latency asks for: a reading the glitch replaced or a
      hold delayed makes the first reading to show a credit a late one, and the latency is
      learnt as its upper bound (``LatencyModel.observe``): the headroom then covers the worst
      rate over those extra seconds. That is the latency model's caution, not the glitch's
      money: it grows with the peak rate, so it is stated as a term, not a constant.
    """
    allowed = 2 * max(1, len(glitches))
    slower = (glitched.latency.observed or 0.0) - (clean.latency.observed or 0.0)
    if slower > 0:
        peaks = [p.tracker.forecast(math.inf) for p in (clean, glitched)]
        peak = max((f.peak_rate for f in peaks if f is not None), default=0.0)
        allowed += math.ceil(peak * slower / float(clean.amount)) + 1
    return allowed


def test_a_glitch_buys_nothing_however_long_the_account_is_watched() -> None:
    """57 EUR, a reading of 19 EUR after a 30-s gap, right again 30 s later. It was believed
    (within 4 x the rate), stayed in the rate and the peak once the next reading took it back,
    and the headroom bought a top-up a second for as long as the peak stayed in view (11 in
    40 s). Two thirds of the balance in one gap is now confirmed first: a misread."""
    flow = [(1.0, D(0))] * 3 + [(1.0, D("0.48")), (5.0, D("2.39"))] + [(30.0, D(0))] * 2
    flow += [(1.0, D(0))] * 40
    clean = run_flow(flow, {}, D(10), 0.0)
    glitched = run_flow(flow, {5: D(19)}, D(10), 0.0)
    assert clean.bought == glitched.bought == []
    assert glitched.judge.misreads == 1
    f, g = clean.tracker.forecast(math.inf), glitched.tracker.forecast(math.inf)
    assert f is not None
    assert g is not None
    assert g.peak_rate == f.peak_rate


def test_a_believed_glitch_taken_back_leaves_the_forecast_as_without_it() -> None:
    """The same account, a reading of 40 EUR (less than half the balance, within 4 x the
    rate: believed, one decision on it), right again 30 s later: the drop is taken back, and
    the rate and the peak are those of the clean readings."""
    flow = [(1.0, D(0))] * 3 + [(1.0, D("0.48")), (5.0, D("2.39"))] + [(30.0, D(0))] * 2
    flow += [(1.0, D(0))] * 40
    clean = run_flow(flow, {}, D(10), 0.0)
    glitched = run_flow(flow, {5: D(40)}, D(10), 0.0)
    assert len(glitched.bought) <= len(clean.bought) + 1, glitched.bought
    assert glitched.tracker.reverted_total == D("17.13")
    f, g = clean.tracker.forecast(math.inf), glitched.tracker.forecast(math.inf)
    assert f is not None
    assert g is not None
    assert g.peak_rate == f.peak_rate


def test_a_glitch_after_start_up_credits_buys_at_most_one_more_top_up() -> None:
    """Start-up top-ups one at a time: every gap the judge believed rose (a credit landed), so
    it has no spend history and holds nothing; the forecast is no longer thin. One reading of
    -2564 EUR, right again the next second, must not buy hundreds of top-ups (or the caps)."""

    def bought(glitches: dict[int, Decimal]) -> int:
        p = Pipeline(amount=D(10), caps=LAX, lag=0.0)
        now, base = 0.0, D(60)
        p.poll(now, BalanceSample(now, base))
        for i, (dt, drop) in enumerate(START_UP_FLOW):
            now += dt
            base -= drop
            p.poll(now, BalanceSample(now, glitches.get(i, base + p.landed_by(now))))
        return len(p.bought)

    assert bought({6: D(-2564)}) <= bought({}) + 1


def bought_with_cached_reads(every: int, lag: float = 15.0) -> int:
    """0.5 EUR/s from 100 EUR, a poll every 5 s for 5 minutes, 10 EUR top-ups whose credit
    shows ``lag`` s after Vonage's "200"; every ``every``-th answer is a cached one, 10 s old."""
    p = Pipeline(amount=D(10), caps=LAX, lag=lag)
    history: list[tuple[float, Decimal]] = []
    for i in range(60):
        now = i * 5.0
        base = D(100) - D("0.5") * i * 5
        history.append((now, base))
        then, old = history[-3] if every and i > 2 and i % every == 0 else (now, base)
        p.poll(now, BalanceSample(now, old + p.landed_by(then)))
    return len(p.bought)


@pytest.mark.parametrize("lag", [5.0, 10.0, 15.0, 25.0])
@pytest.mark.parametrize("every", [2, 3, 4, 5])
def test_cached_reads_do_not_buy_a_storm(every: int, lag: float) -> None:
    """Issue 10: a stale answer is higher than the one before it, a rise; a top-up on its way
    "explains" it, so it is settled by money that has not arrived, and bought again. Or lower
    (a credit that just landed, not in the cached answer): a drop within what a burst might do,
    believed, and the headroom buys for it."""
    fresh = bought_with_cached_reads(0, lag)
    assert fresh > 0
    # Bounded, not a storm; the known limit of telling a cached answer from a credit by the
    # balance alone. Measured (fresh 11-12 across this table): 5 to 19 with cached answers.
    # Before the peak's unknown seconds spent at the sustained rate: 5 to 22 (every second,
    # lag 10 s: 22, now 19; every third, lag 15 s, the one case this test once pinned: 13,
    # now 18). Below fresh is no bargain: a cached rise settles a credit early, and the
    # account runs leaner.
    assert bought_with_cached_reads(every, lag) <= 2 * fresh


def test_a_one_off_debit_is_not_extrapolated_into_several_top_ups() -> None:
    """Issue 10: 60 EUR, 0.02 EUR/s, a 40 EUR debit at t = 20 s: nothing needed for minutes."""
    p = Pipeline(amount=D(10), caps=LAX, lag=2.0)
    balance = D(60)
    for t in range(0, 121):
        balance -= D("0.02") if t else 0
        if t == 20:
            balance -= D(40)
        p.poll(float(t), BalanceSample(float(t), balance + p.landed_by(float(t))))
    # 20 EUR left at 0.02 EUR/s: the floor is 500 s away; at most the thin start-up's one.
    assert len(p.bought) <= 1, p.bought


def test_a_credit_showing_seconds_after_the_answer_is_bought_once() -> None:
    """Issue 10: 6 EUR, 0.3 EUR/s, 50 EUR top-ups, the credit 3 s behind Vonage's "200"."""
    p = Pipeline(amount=D(50), caps=LAX, lag=3.0)
    for t in range(0, 60):
        now = float(t)
        p.poll(now, BalanceSample(now, D(6) - D("0.3") * t + p.landed_by(now)))
    # Once the first is on its way, only what the policy wants beyond it (its headroom) is
    # bought: not a charge per poll until the credit shows.
    assert len(p.bought) <= max(1, p.max_need), (p.bought, p.max_need)
    assert all(b < 3.0 for b in p.bought)  # nothing bought again after the credit showed


# Found by the property above on a random run (CI, 2026-12-02). The reading of 100 EUR comes just
# as a bought credit shows (the clean one is 60.07): no credit in flight explains its rise, so it
# is held and, the next reading back near the trajectory, dropped as a misread — never believed.
# What it cost was the reading it replaced: the gap across the credit (111 -> 142 s) rose by less
# than half the credit, so its spend is unknown, and the 30-s peak window had 2 s of known spend
# left; one 1.42-EUR second read as a 0.71 EUR/s burst, and the headroom bought 7 top-ups where the
# clean readings bought 2. A poll simply lost there did the same. Unknown seconds in the peak
# window now spend at the sustained rate (``SpendTracker._burst_rate``).
GLITCH_UP_FLOW = [
    (1.0, D("0.12")),
    (5.0, D("0.05")),
    (1.0, D("0.01")),
    (1.0, D("0.02")),
    (30.0, D("0.41")),
    (1.0, D("1.76")),
    (30.0, D("1.21")),
    (1.0, D("1.13")),
    (1.0, D("2.24")),
    (1.0, D("3.00")),
    (5.0, D("3.00")),
    (1.0, D("0.39")),
    (1.0, D("0.48")),
    (1.0, D("0.59")),
    (1.0, D("2.45")),
    (30.0, D("1.06")),
    (1.0, D("2.01")),
    (30.0, D("3.00")),
    (1.0, D("0.00")),
    (1.0, D("1.42")),
    (1.0, D("0.09")),
    (1.0, D("0.00")),
]


def test_a_glitch_up_then_the_drop_back_buys_no_burst_of_top_ups() -> None:
    clean = run_flow(GLITCH_UP_FLOW, {}, D(10), 0.0)
    glitched = run_flow(GLITCH_UP_FLOW, {16: D("1E+2")}, D(10), 0.0)
    assert glitched.judge.misreads == 1  # held, then dropped: never a credit
    assert len(glitched.bought) <= len(clean.bought) + glitch_allowance(
        clean, glitched, {16: D("1E+2")}
    )


def test_a_poll_lost_as_a_credit_shows_buys_no_burst_of_top_ups() -> None:
    """The same account with reading 16 not misread but missing (a failed poll): the same lost
    information, the same answer."""
    p = Pipeline(amount=D(10), caps=LAX, lag=0.0)
    now, base = 0.0, D(60)
    p.poll(now, BalanceSample(now, base))
    for i, (dt, drop) in enumerate(GLITCH_UP_FLOW):
        now += dt
        base -= drop
        if i != 16:
            p.poll(now, BalanceSample(now, base + p.landed_by(now)))
    clean = run_flow(GLITCH_UP_FLOW, {}, D(10), 0.0)
    assert len(p.bought) <= len(clean.bought) + 1, (p.bought, clean.bought)


def credited_account(credit: Decimal) -> tuple[Pipeline, dict[float, float | None]]:
    """40 EUR spent at 0.1 EUR/s, read every 5 s for 5 minutes; ``credit`` EUR that no top-up
    in flight explains lands at t = 100. Returns the pipeline and, per poll, the time of the
    reading the decision believed."""
    p = Pipeline(amount=D(10), caps=LAX, lag=0.0)
    believed_at: dict[float, float | None] = {}
    for i in range(61):
        now = i * 5.0
        base = D(40) - D("0.1") * i * 5 + (credit if now >= 100.0 else 0)
        p.poll(now, BalanceSample(now, base + p.landed_by(now)))
        believed_at[now] = p.believed.t if p.believed else None
    return p, believed_at


def test_a_credit_nobody_announced_is_believed_one_reading_later() -> None:
    """An operator's manual top-up in the dashboard, or Vonage's own auto-reload: 40 EUR no
    top-up in flight explains. The rise is held for one reading, not refused: the next one,
    still up (less the spend in between), confirms it, and both are believed. The account
    without it needs top-ups before the five minutes are out; with it, the guard buys none."""
    p, believed_at = credited_account(D(40))
    assert believed_at[100.0] == 95.0  # held: the decision saw the reading before it
    assert believed_at[105.0] == 105.0  # confirmed by the next reading: both believed
    assert p.judge.misreads == 0
    f = p.tracker.forecast(300.0)
    assert f is not None
    assert f.credits_total == D("39.5")  # the rise (the spend in its gap hidden) is money
    assert f.balance == D(50)
    assert p.bought == []
    without, _ = credited_account(D(0))
    assert without.bought  # the floor needed them
