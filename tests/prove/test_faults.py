"""Every simulator fault on both endpoints the worker uses, singly, in bursts and mixed.

For each case the real engine runs five simulated minutes over real sockets against an account
spending 0.5 EUR/s from just under the floor (so it needs several top-ups while the faults hit),
and must end with:
- the account having received exactly the top-ups the ledger says succeeded (none lost, none
  doubled), no attempt left unresolved, and no storm (at most what the spend needed, plus one);
- no exhaustion and no failed spend (every top-up here can land in time);
- no balance the account did not have: every fault that garbles a read raised instead.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from tests.prove.conftest import Tally
from tests.prove.netrig import READ_FAILS, Fault, RunResult, fault, run_guard
from topup_guard import retry
from topup_guard.events import PollFailed
from topup_guard.sim.faults import FAULT_KINDS, READING_KINDS

ENDPOINTS = ("get-balance", "top-up")
BURST = {kind: 3 + i % 3 for i, kind in enumerate(FAULT_KINDS)}  # 3, 4 or 5 in a row


@pytest.fixture(autouse=True)
def _no_backoff() -> None:
    retry.set_testing(True)  # waits off (Retry-After included); every bound still applies
    yield  # type: ignore[misc]
    retry.set_testing(False)


def check(result: RunResult, tally: Tally) -> None:
    """The money-safety invariants every run must hold."""
    account = result.sim.account
    assert result.unresolved == 0, "every attempt must end in a final state"
    assert result.succeeded == result.received, (
        f"ledger says {result.succeeded} top-ups succeeded, the account received {result.received}"
    )
    needed = result.needed_at_most(Decimal(8), Decimal(10), Decimal(50))
    # A debt read (``negative_balance``) is a legitimate balance: the guard tops up for what it
    # read (at most two 50 EUR top-ups per debt read here), then the real balance shows again.
    debts = sum(1 for e, k in result.consumed if (e, k) == ("get-balance", "negative_balance"))
    assert result.received <= needed + 2 * debts, "more top-ups than the spend needed: a storm"
    assert account.exhausted_seconds == 0
    assert account.failed_events == 0
    # Well-formed numbers that are not the balance now (a cache's stale answer, 1e16, a glitch)
    # pass the client by design: the engine's judge must drop them, which the exact top-up
    # count above proves. Any other wrong number is a parser failure.
    judged = sum(1 for e, k in result.consumed if e == "get-balance" and k in READING_KINDS)
    assert len(result.api.misreads) <= judged, "a garbled answer was taken for a balance"
    tally.add("wrong_numbers_judged", len(result.api.misreads))
    read_faults = [k for e, k in result.consumed if e == "get-balance" and k in READ_FAILS]
    # aiohttp itself resends an idempotent GET once when a reused keep-alive connection is
    # reset, so a reset may never reach the guard; every answered fault must raise.
    answered = [k for k in read_faults if k not in ("reset_before", "reset_after")]
    assert len(answered) <= sum(result.api.read_errors.values()) <= len(read_faults)
    tally.add("runs")
    tally.add("faults_injected", len(result.consumed))
    tally.add("reads_rejected", sum(result.api.read_errors.values()))
    tally.add("topups_intended", result.succeeded)
    tally.add("topups_received", result.received)
    tally.add("attempts_audited", len(result.ledger_states))


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_single_fault_is_survived_with_exact_top_ups(
    endpoint: str, kind: str, tmp_path: Path, tally: Tally
) -> None:
    result = await run_guard(tmp_path, [fault(endpoint, kind, 1)])
    assert result.consumed == [(endpoint, kind)], "the fault must actually have been hit"
    check(result, tally)


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_burst_of_faults_is_survived_with_exact_top_ups(
    endpoint: str, kind: str, tmp_path: Path, tally: Tally
) -> None:
    count = BURST[kind]
    result = await run_guard(tmp_path, [fault(endpoint, kind, count)])
    # Every read meets the burst; a POST only when a top-up is due (one per ~100 s here).
    hits = count if endpoint == "get-balance" else min(count, result.api.posts)
    assert len(result.consumed) == hits, "every call must meet the burst until it is spent"
    check(result, tally)
    resets = ("reset_before", "reset_after")  # aiohttp resends a GET once after a reset
    if endpoint == "get-balance" and kind in READ_FAILS and kind not in resets and count >= 4:
        # Four failed reads in a row exhaust one cycle's retries: the poll is reported failed.
        assert any(isinstance(e, PollFailed) for e in result.events.events)


MIXED: list[list[tuple[str, str, int]]] = [
    [("get-balance", "html_error", 2), ("top-up", "reset_after", 1),
     ("get-balance", "value_nan", 1), ("top-up", "error_500_before", 2)],
    [("top-up", "timeout_after", 1), ("top-up", "malformed_json", 1),
     ("top-up", "redirect", 1), ("get-balance", "huge_body", 3)],
    [("get-balance", "empty_body", 1), ("get-balance", "value_string", 1),
     ("get-balance", "rate_limit", 1), ("get-balance", "reset_after", 1),
     ("top-up", "rate_limit", 4), ("top-up", "error_500_after", 2)],
]  # fmt: skip


def _random_sequence(seed: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    return [
        (rng.choice(ENDPOINTS), rng.choice(FAULT_KINDS), rng.randint(1, 3))
        for _ in range(rng.randint(3, 6))
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "sequence",
    MIXED + [_random_sequence(seed) for seed in range(6)],
    ids=[f"mixed{i}" for i in range(len(MIXED))] + [f"random{s}" for s in range(6)],
)
async def test_mixed_fault_sequences_are_survived_with_exact_top_ups(
    sequence: list[tuple[str, str, int]], tmp_path: Path, tally: Tally
) -> None:
    faults: list[Fault] = [fault(e, k, n) for e, k, n in sequence]
    result = await run_guard(tmp_path, faults, seconds=600.0)
    check(result, tally)
    tally.add("mixed_sequences")
