"""What the demo's second part measured, and the figures it ends with.

Wall times (Unix seconds) from three witnesses: the engine's events (each get-balance poll and
when its own schedule had the next one), the sender's answers (each message's status and
remaining-balance) and the simulator's record of each top-up call. Nothing here is a model: a
figure the summary prints is a difference of two of these times, or a count of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

# Two answers further apart than this, in EUR upwards, are a credit, not rounding.
_CREDIT_STEP = Decimal(1)


@dataclass(frozen=True, slots=True)
class Poll:
    at: float  # wall time the guard had the reading (and its decision)
    balance: Decimal
    due: float | None  # when the engine's own schedule had this poll (None: the first)
    top_up: bool  # its decision was to top up

    @property
    def early(self) -> bool:
        """Brought forward by the sender's answers, not the schedule."""
        return self.due is not None and self.at < self.due - 1.0


@dataclass
class ActTimeline:
    """What happened during the act, as the engine, the sender and the simulator saw it."""

    floor: Decimal
    steady_rate: float  # the sender's messages a second outside the campaign
    started: float = 0.0  # the guard's start; the live lines count from here
    burst: float = 0.0  # the campaign's first message was due
    emptied: float = 0.0  # the balance taken at once
    polls: list[Poll] = field(default_factory=list)
    topups: list[float] = field(default_factory=list)  # top-up calls, on the simulator's record
    refusals: list[float] = field(default_factory=list)  # status-9 answers
    sent: list[float] = field(default_factory=list)  # every answer's arrival
    balances: list[tuple[float, Decimal]] = field(default_factory=list)  # remaining-balance seen
    reads: int = 0  # get-balance calls the simulator answered
    topups_on_a_read: int = 0  # top-up calls made right after a get-balance that asked for one

    def first_poll_after(self, t: float) -> Poll | None:
        return next((p for p in self.polls if p.at >= t and p.early), None)

    def first_topup_after(self, t: float) -> float | None:
        return next((x for x in self.topups if x >= t), None)

    def answers_after(self, a: float, b: float) -> int:
        """The sender's answers that arrived after ``a``, before ``b``."""
        return sum(1 for x in self.sent if a < x < b)

    def refused_between(self, a: float, b: float) -> int:
        return sum(1 for x in self.refusals if a <= x < b)

    def campaign_pace(self) -> tuple[Decimal, float] | None:
        """(balance the answers showed as the campaign began, EUR/s they showed it falling at
        until the first credit); None without two answers in between."""
        before = [b for t, b in self.balances if t < self.burst]
        during: list[tuple[float, Decimal]] = []
        for t, b in self.balances:
            if t < self.burst:
                continue
            if during and b > during[-1][1] + _CREDIT_STEP:
                break
            during.append((t, b))
        if not before or len(during) < 2 or during[-1][0] <= during[0][0]:
            return None
        (t0, b0), (t1, b1) = during[0], during[-1]
        return before[-1], float(b0 - b1) / (t1 - t0)


@dataclass(frozen=True, slots=True)
class Reaction:
    """How the guard answered one moment of the act, in seconds from the moment itself."""

    looked_in: float  # to the get-balance read the answers brought forward
    topped_up_in: float  # to the top-up call reaching the simulator
    answers_before_look: int  # the sender's answers after the moment's own, before that read
    poll_was_due_in: float  # to the next poll the engine had scheduled: polling alone
    refused: int  # messages refused from the moment to the end of the act


def reaction(line: ActTimeline, moment: float) -> Reaction | None:
    """The guard's answer to ``moment`` (``line.burst``, or the first refusal); None if it
    never looked early or never topped up after it."""
    poll, topup = line.first_poll_after(moment), line.first_topup_after(moment)
    if poll is None or poll.due is None or topup is None:
        return None
    return Reaction(
        looked_in=poll.at - moment,
        topped_up_in=topup - moment,
        answers_before_look=line.answers_after(moment, poll.at),
        poll_was_due_in=poll.due - moment,
        refused=line.refused_between(moment, math.inf),
    )


def summarize(line: ActTimeline, out: TextIO) -> None:
    """What the answers bought, in measured figures."""
    print("\nMeasured:", file=out)
    campaign = reaction(line, line.burst)
    if campaign is not None:
        refused = line.refused_between(line.burst, line.emptied or math.inf)
        print(
            f"  The campaign: the guard read the balance {campaign.looked_in:.2f} s after it "
            f"began ({campaign.answers_before_look} answers in) and its top-up reached Vonage "
            f"{campaign.topped_up_in:.2f} s after it began; {refused} messages refused.",
            file=out,
        )
        pace = line.campaign_pace()
        if pace is not None and pace[1] > 0:
            balance, rate = pace
            dry = float(balance - line.floor) / rate
            print(
                f"    Its next poll was due {campaign.poll_was_due_in:.0f} s after the campaign "
                f"began; at the pace the answers showed ({rate:.3f} EUR/s), the {balance:.2f} "
                f"EUR would have reached the floor {dry:.0f} s in.",
                file=out,
            )
    first_refusal = next((r for r in line.refusals if r >= line.emptied), None)
    refusal = reaction(line, first_refusal) if first_refusal is not None else None
    if refusal is not None:
        late = refusal.poll_was_due_in
        before = (
            "before the sender's next message"
            if refusal.answers_before_look == 0
            else f"{refusal.answers_before_look} messages later"
        )
        print(
            f"  The empty account: the guard read the balance {refusal.looked_in:.2f} s after "
            f"the first refused message ({before}),\n    and its top-up reached Vonage "
            f"{refusal.topped_up_in:.2f} s after it; {refusal.refused} messages refused until "
            f"the credit showed.\n    Polling alone would have looked {late:.0f} s after the "
            f"refusal: about {late * line.steady_rate:.0f} messages refused at "
            f"{line.steady_rate:g} SMS/s.",
            file=out,
        )
    early = line.refused_between(0.0, line.emptied or math.inf)
    print(
        f"  {len(line.sent)} messages sent, {early} refused before the account was emptied; "
        f"{line.reads} get-balance calls in all.\n  {line.topups_on_a_read} of the "
        f"{len(line.topups)} top-ups came right after a get-balance reading that called for it: "
        "a forwarded answer\n  makes the guard look sooner, it never moves money by itself.",
        file=out,
        flush=True,
    )
