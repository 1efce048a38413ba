"""Burst memory by time of day: what recurs is expected again; the kept answer is never stale."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from topup_guard.policy.memory import DAY_S, SLOT_S, BurstMemory

NINE = 9 * 3600.0


def test_a_rate_two_earlier_days_saw_is_expected_again_one_day_alone_is_not() -> None:
    memory = BurstMemory()
    memory.observe(NINE, 0.8)  # day 0, 09:00
    assert memory.expected(DAY_S + NINE - 60, DAY_S + NINE) == 0.0  # one earlier day: no
    memory.observe(DAY_S + NINE, 0.5)  # day 1
    later = 2 * DAY_S + NINE
    assert memory.expected(later - 60, later) == 0.5  # the second-highest of the days' peaks
    assert memory.expected(later - 3 * SLOT_S, later - 2 * SLOT_S) == 0.0  # 08:15: nothing
    assert memory.largest() == 0.8


def test_the_kept_answer_follows_a_change_to_an_earlier_day() -> None:
    memory = BurstMemory()
    memory.observe(NINE, 0.8)
    memory.observe(DAY_S + NINE, 0.5)
    at = 2 * DAY_S + NINE
    assert memory.expected(at, at + 60) == 0.5
    memory.observe(at, 5.0)  # today: no effect on what earlier days brought
    assert memory.expected(at, at + 60) == 0.5
    memory.observe(DAY_S + NINE, 0.9)  # a clock set back writes to yesterday
    assert memory.expected(at, at + 60) == 0.8


def test_days_beyond_the_memory_are_forgotten() -> None:
    memory = BurstMemory(days=2)
    memory.observe(NINE, 0.8)
    memory.observe(DAY_S + NINE, 0.5)
    at = 2 * DAY_S + NINE
    assert memory.expected(at, at + 60) == 0.5
    memory.observe(at, 0.1)  # day 2 arrives: day 0 leaves
    assert memory.expected(at, at + 60) == 0.0


_walls = st.floats(min_value=0, max_value=6 * DAY_S, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    writes=st.lists(st.tuples(_walls, st.floats(min_value=0, max_value=2)), max_size=40),
    asks=st.lists(st.tuples(_walls, st.floats(min_value=0, max_value=2 * SLOT_S)), max_size=40),
    order=st.lists(st.booleans(), max_size=80),
)
def test_the_kept_answer_always_equals_a_fresh_one(
    writes: list[tuple[float, float]], asks: list[tuple[float, float]], order: list[bool]
) -> None:
    memory = BurstMemory(days=3)
    w, a = iter(writes), iter(asks)
    for write in order:
        if write and (item := next(w, None)) is not None:
            memory.observe(*item)
        elif not write and (ask := next(a, None)) is not None:
            start, length = ask
            fresh = BurstMemory.from_dict(memory.to_dict())
            assert memory.expected(start, start + length) == fresh.expected(start, start + length)
