"""The demo's second part: a sender's forwarded answers make the real guard act within one
message, over real HTTP, while its next poll is two minutes away."""

from __future__ import annotations

import io

from topup_guard.demo_signal import POLL_INTERVAL, run_signal_act
from topup_guard.demo_timeline import reaction, summarize


async def test_the_guard_reacts_to_a_refused_message_before_the_next_one_and_a_poll_is_minutes_off(
) -> None:  # fmt: skip
    out = io.StringIO()
    line = await run_signal_act(out=out)
    summarize(line, out)
    text = out.getvalue()

    campaign = reaction(line, line.burst)
    assert campaign is not None, f"no early read and top-up after the campaign began:\n{text}"
    assert campaign.looked_in <= 1.0, text
    assert campaign.topped_up_in <= 1.5, text
    assert campaign.poll_was_due_in >= POLL_INTERVAL - 10, "polling alone would not be late"
    assert line.refused_between(0.0, line.emptied) == 0, (
        "a message refused before the account was emptied"
    )

    first_refusal = next(r for r in line.refusals if r >= line.emptied)
    refusal = reaction(line, first_refusal)
    assert refusal is not None, f"no early read and top-up after the first refusal:\n{text}"
    # Within one message: the guard reads the balance before the sender's next answer (0.2 s
    # later at 5 SMS/s), and the top-up follows the second read a sudden drop takes.
    assert refusal.answers_before_look == 0, text
    assert refusal.looked_in <= 0.5, text
    assert refusal.topped_up_in <= 2.0, text
    assert refusal.poll_was_due_in >= POLL_INTERVAL - 10
    assert 0 < refusal.refused <= 15, text

    assert line.topups
    assert line.topups_on_a_read == len(line.topups), "a top-up without a read that asked for it"
    assert "Polling alone would have looked" in text
