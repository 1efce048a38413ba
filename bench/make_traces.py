"""Generate the sample spend traces in bench/traces/ (deterministic; re-run to regenerate).

Each trace is six hours of one demand event per second (`t,spend`), priced per SMS-ish charge:
- steady:   a constant ~1.8 EUR/min;
- diurnal:  a day's shape compressed into six hours (quiet night, busy afternoon);
- campaign: a low base with three campaign bursts of 10–20 minutes at 10–15x the base;
- flash:    quiet, then one flash spike that drains ~60 EUR in two minutes;
- sawtooth: a low base with a 45-second burst every ten minutes (the trace that made the first
            policy poll every 2 s for hours);
- ramp:     demand growing steadily from almost nothing to ~5 EUR/min;
- quiet:    a message every few minutes;
- recurring: three days (one event per 5 s) with a campaign at 09:00 and a smaller one at 18:00
            every day (what burst memory is for).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

HERE = Path(__file__).parent / "traces"
SECONDS = 6 * 3600


def steady(t: int, rng: random.Random) -> float:
    return 0.03 * rng.uniform(0.6, 1.4)


def diurnal(t: int, rng: random.Random) -> float:
    phase = (t / SECONDS) * 2 * math.pi
    return max(0.0, 0.025 * (1 - math.cos(phase)) * rng.uniform(0.5, 1.5))


def campaign(t: int, rng: random.Random) -> float:
    base = 0.01
    for start, minutes, mult in ((3600, 15, 12), (9000, 20, 10), (16200, 10, 15)):
        if start <= t < start + minutes * 60:
            base *= mult
    return base * rng.uniform(0.5, 1.5)


def flash(t: int, rng: random.Random) -> float:
    if 10800 <= t < 10920:
        return 0.5 * rng.uniform(0.8, 1.2)
    return 0.004 * rng.uniform(0.0, 2.0)


def sawtooth(t: int, rng: random.Random) -> float:
    if t % 600 < 45:
        return 0.4 * rng.uniform(0.8, 1.2)
    return 0.003 * rng.uniform(0.0, 2.0)


def ramp(t: int, rng: random.Random) -> float:
    return (0.001 + 0.079 * t / SECONDS) * rng.uniform(0.6, 1.4)


def quiet(t: int, rng: random.Random) -> float:
    return 0.0075 if rng.random() < 1 / 240 else 0.0


RECURRING_DAYS = 3
RECURRING_STEP = 5


def recurring_rate(t: int, rng: random.Random) -> float:
    """EUR/s at t seconds into the trace (the trace starts at midnight)."""
    of_day = t % 86400
    if 9 * 3600 <= of_day < 9 * 3600 + 900:
        return 0.5 * rng.uniform(0.8, 1.2)
    if 18 * 3600 <= of_day < 18 * 3600 + 600:
        return 0.3 * rng.uniform(0.8, 1.2)
    daytime = 0.004 if 7 * 3600 <= of_day < 22 * 3600 else 0.0008
    return daytime * rng.uniform(0.5, 1.5)


def _write(name: str, lines: list[str]) -> None:
    (HERE / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, shape in (("steady", steady), ("diurnal", diurnal), ("campaign", campaign),
                        ("flash", flash), ("sawtooth", sawtooth), ("ramp", ramp),
                        ("quiet", quiet)):  # fmt: skip
        rng = random.Random(name)
        lines = ["t,spend"]
        for t in range(SECONDS):
            lines.append(f"{t},{shape(t, rng):.4f}")
        _write(name, lines)
    rng = random.Random("recurring")
    lines = ["t,spend"]
    for t in range(0, RECURRING_DAYS * 86400, RECURRING_STEP):
        lines.append(f"{t},{recurring_rate(t, rng) * RECURRING_STEP:.4f}")
    _write("recurring", lines)


if __name__ == "__main__":
    main()
