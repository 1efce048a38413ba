"""Grouping conditions by cause, on a virtual clock: what is said, when, and how often."""

from __future__ import annotations

from decimal import Decimal

import pytest

from topup_guard.events import Condition, ConditionsChanged, Outcome, TopUpFinished
from topup_guard.notify.incident_text import incident
from topup_guard.notify.incidents import CAUSES, ROOT_ORDER, Change, IncidentTracker, partition
from topup_guard.notify.note import IncidentAction, Note, Scope

C = Condition
WALL = 1_800_000_000.0
SCOPE = Scope("abcd1234", environment="production")
DETAIL = {
    C.AUTORELOAD_DISABLED: "Vonage reports autoReload: false",
    C.BREAKER_OPEN: "consecutive top-ups failed or went unconfirmed",
    C.EXHAUSTION_FORECAST: "balance 11.21 EUR falls below the floor within 40 s at 0.05 EUR/s",
    C.LOW_BALANCE: "balance 9.96 EUR is below the floor 10 EUR",
    C.CAP_REACHED: "hourly cap of 4 top-ups used",
    C.POLL_FAILING: "GET /account/get-balance: no answer",
    C.COORDINATION_DOWN: "the shared store is unreachable: nobody spends",
    C.UNCONFIRMED_TOPUP: "attempt 4: no credit showed",
}


def snap(t: float, *active: Condition, **clears: float) -> ConditionsChanged:
    return ConditionsChanged(
        wall=WALL + t,
        active={c: DETAIL[c] for c in active},
        clears_at={C(k): v for k, v in clears.items()},
    )


def failed(attempt: int, t: float) -> TopUpFinished:
    return TopUpFinished(
        attempt_id=attempt,
        outcome=Outcome.FAILED,
        balance_before=Decimal("12"),
        expected_amount=Decimal("50"),
        credited=None,
        balance_after=None,
        reason="forecast below floor",
        rate=0.05,
        time_to_exhaustion=240.0,
        detail="TopUpRefusedError: POST /account/top-up: topup failed",
        action_needed="Check the payment method in the Vonage dashboard.",
        requests=1,
        evidence=None,
        wall=WALL + t,
    )


def body(note: Note) -> str:
    return "\n".join([note.text, *(p.text for p in note.paragraphs)])


class Run:
    """Feeds a tracker one event at a time and collects what it says, as the dispatcher does."""

    def __init__(self, repeat: float = 3600.0, group_wait: float = 30.0) -> None:
        self.tracker = IncidentTracker(repeat, group_wait)
        self.said: list[Change] = []

    def at(self, t: float, *active: Condition) -> list[Change]:
        self.tracker.observe(snap(t, *active), t)
        return self._flush(t)

    def topup(self, t: float, event: TopUpFinished) -> list[Change]:
        self.tracker.add_topup(event, t)
        return self._flush(t)

    def _flush(self, t: float) -> list[Change]:
        flushed = self.tracker.flush(t)
        assert not flushed.topups, "failed top-ups were left without a group"
        self.said.extend(flushed.changes)
        return list(flushed.changes)


def test_one_cause_raising_four_conditions_is_one_message_naming_the_root() -> None:
    run = Run(group_wait=0)
    four = (C.BREAKER_OPEN, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.LOW_BALANCE)
    [change] = run.at(0, *four)
    assert change.action is IncidentAction.OPEN
    assert change.root is C.AUTORELOAD_DISABLED
    assert [c for c, _ in change.members] == [
        C.AUTORELOAD_DISABLED,
        C.BREAKER_OPEN,
        C.EXHAUSTION_FORECAST,
        C.LOW_BALANCE,
    ]
    note = incident(change, SCOPE)
    assert note.title == "Auto-reload is disabled: the guard cannot top up"
    assert note.text.startswith("[production · abcd1234] Auto-reload is disabled")
    assert "circuit breaker open" in note.text


def test_failed_topups_and_conditions_over_several_cycles_are_one_message() -> None:
    # As the engine emits it: three refused payments 5 s apart, then three conditions at once,
    # then the balance crosses the floor half a minute later.
    run = Run(group_wait=30)
    assert run.topup(0, failed(1, 0)) == []
    assert run.topup(5, failed(2, 5)) == []
    assert run.topup(10, failed(3, 10)) == []
    assert run.at(14, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.BREAKER_OPEN) == []
    [change] = run.at(31, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.BREAKER_OPEN)
    assert change.root is C.AUTORELOAD_DISABLED
    assert [t.attempt_id for t in change.topups] == [1, 2, 3]
    note = incident(change, SCOPE)
    assert "After 3 failed top-ups" in note.text
    assert "Attempts #1, #2, #3: Vonage refused the payment" in body(note)
    for t in range(36, 600, 5):  # the balance falls below the floor: a symptom, nothing new
        run.at(t, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.BREAKER_OPEN, C.LOW_BALANCE)
    assert len(run.said) == 1


def test_reminders_are_one_per_group_and_never_two_identical_bodies() -> None:
    run = Run(repeat=600, group_wait=0)
    four = (C.BREAKER_OPEN, C.AUTORELOAD_DISABLED, C.EXHAUSTION_FORECAST, C.LOW_BALANCE)
    for t in range(0, 1900, 60):
        run.at(t, *four)
    actions = [c.action for c in run.said]
    assert actions == [IncidentAction.OPEN, *[IncidentAction.REPEAT] * 3]
    notes = [incident(c, SCOPE) for c in run.said]
    assert all(n.title.startswith("Still: Auto-reload is disabled") for n in notes[1:])
    assert len({n.text for n in notes}) == len(notes)


def test_a_condition_that_starts_and_ends_within_the_group_wait_is_never_announced() -> None:
    run = Run(group_wait=30)
    run.at(0, C.LOW_BALANCE)
    run.at(10)  # topped up: gone before anyone was told
    run.at(40)
    run.at(100)
    assert run.said == []


def test_balance_conditions_are_held_while_the_balance_cannot_be_read() -> None:
    run = Run(group_wait=0)
    run.at(0, C.AUTORELOAD_DISABLED, C.LOW_BALANCE)
    # Polls fail: the engine knows nothing about auto-reload or the balance any more.
    [blind] = run.at(5, C.POLL_FAILING)
    assert blind.root is C.POLL_FAILING
    assert blind.action is IncidentAction.OPEN
    for t in range(10, 300, 5):
        run.at(t, C.POLL_FAILING)
    assert C.AUTORELOAD_DISABLED in run.tracker.active
    # The balance reads again and auto-reload is still off: no "Recovered", no re-raise.
    run.at(300, C.AUTORELOAD_DISABLED, C.LOW_BALANCE)
    actions = [(c.root, c.action) for c in run.said]
    assert actions == [
        (C.AUTORELOAD_DISABLED, IncidentAction.OPEN),
        (C.POLL_FAILING, IncidentAction.OPEN),
        (C.POLL_FAILING, IncidentAction.RESOLVED),
    ]


def test_a_held_condition_says_it_comes_from_the_last_reading() -> None:
    run = Run(repeat=60, group_wait=0)
    run.at(0, C.LOW_BALANCE)
    run.at(5, C.POLL_FAILING)
    [*_, reminder] = [c for c in run.at(70, C.POLL_FAILING) if c.root is C.LOW_BALANCE]
    assert dict(reminder.members)[C.LOW_BALANCE].held
    assert "last reading: the balance cannot be read now" in incident(reminder, SCOPE).text


def test_a_deeper_cause_joining_becomes_the_root_and_replaces_the_old_key() -> None:
    run = Run(group_wait=0)
    run.at(0, C.BREAKER_OPEN)
    [change] = run.at(60, C.BREAKER_OPEN, C.AUTORELOAD_DISABLED)
    assert change.action is IncidentAction.UPDATE
    assert change.root is C.AUTORELOAD_DISABLED
    note = incident(change, SCOPE)
    assert note.incident is not None
    assert note.incident.key == "autoreload_disabled"
    assert note.incident.replaces == ("breaker_open",)


def test_a_cause_that_recovers_while_another_remains_is_an_update() -> None:
    run = Run(group_wait=0)
    run.at(0, C.AUTORELOAD_DISABLED, C.BREAKER_OPEN, C.LOW_BALANCE)
    [change] = run.at(60, C.BREAKER_OPEN, C.LOW_BALANCE)  # auto-reload switched back on
    assert change.action is IncidentAction.UPDATE
    assert change.root is C.BREAKER_OPEN
    assert change.recovered == (C.AUTORELOAD_DISABLED,)
    assert "Vonage reports auto-reload enabled again" in incident(change, SCOPE).text


def test_a_group_ends_with_one_recovered_message() -> None:
    run = Run(group_wait=0)
    run.at(0, C.AUTORELOAD_DISABLED, C.BREAKER_OPEN, C.LOW_BALANCE)
    [change] = run.at(900)
    assert run.at(960) == []
    assert change.action is IncidentAction.RESOLVED
    note = incident(change, SCOPE)
    assert note.title == "Recovered: Auto-reload is disabled: the guard cannot top up"
    assert "lasted 15 min" in note.text
    assert "circuit breaker closed" in note.text


def test_independent_causes_are_told_apart() -> None:
    run = Run(group_wait=0)
    changes = run.at(0, C.POLL_FAILING, C.UNCONFIRMED_TOPUP)
    assert {c.root for c in changes} == {C.POLL_FAILING, C.UNCONFIRMED_TOPUP}


def test_every_condition_has_a_place_in_the_grouping() -> None:
    assert set(CAUSES) == set(Condition) == set(ROOT_ORDER)
    assert partition([]) == []
    assert partition(list(Condition))[0] >= {C.COORDINATION_DOWN, C.LOW_BALANCE}


@pytest.mark.parametrize(
    ("condition", "clears_at", "said"),
    [
        (C.BREAKER_OPEN, WALL + 754, "One trial top-up is allowed at 08:12 UTC (in 12 min 34 s)"),
        (C.BREAKER_OPEN, None, "once the breaker's cooldown (TOPUP_GUARD_BREAKER_COOLDOWN)"),
        (C.BREAKER_OPEN, WALL - 5, "One trial top-up is allowed now"),
        (C.CAP_REACHED, WALL + 3600, "Top-ups are allowed again at 09:00 UTC (in 1 h)"),
        (C.CAP_REACHED, None, "once the oldest counted top-up leaves its rolling window"),
    ],
)
def test_breaker_and_cap_messages_say_when_they_clear(
    condition: Condition, clears_at: float | None, said: str
) -> None:
    tracker = IncidentTracker(3600, 0)
    clears = {condition.value: clears_at} if clears_at is not None else {}
    tracker.observe(snap(0, condition, **clears), 0)
    [change] = tracker.flush(0).changes
    text = incident(change, SCOPE).text
    assert said in text
    assert "in 0 s" not in text


def test_a_breaker_under_a_deeper_cause_still_says_when_it_clears() -> None:
    tracker = IncidentTracker(3600, 0)
    tracker.observe(snap(0, C.AUTORELOAD_DISABLED, C.BREAKER_OPEN, breaker_open=WALL + 3600), 0)
    [change] = tracker.flush(0).changes
    assert change.root is C.AUTORELOAD_DISABLED
    assert (
        "also: circuit breaker open: top-ups paused — one trial top-up is allowed at 09:00 UTC "
        "(in 1 h)" in incident(change, SCOPE).text
    )


def test_causes_joined_through_a_shared_effect_are_not_said_to_cause_each_other() -> None:
    run = Run(group_wait=0)
    [change] = run.at(0, C.COORDINATION_DOWN, C.CAP_REACHED, C.LOW_BALANCE)
    assert change.root is C.COORDINATION_DOWN
    labels = {p.label: p.text for p in incident(change, SCOPE).paragraphs}
    assert "Balance below the floor" in labels["Because of it"]
    assert "Top-up cap reached" in labels["Also active"]
    assert "Top-up cap reached" not in labels["Because of it"]
