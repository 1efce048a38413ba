"""Generate the sample spend traces in bench/traces/ (deterministic; re-run to regenerate).

Each trace is six hours of one demand event per second (`t,spend`), priced per SMS-ish charge:
- steady:   a constant ~1.8 EUR/min;
- diurnal:  a day's shape compressed into six hours (quiet night, busy afternoon);
- campaign: a low base with three campaign bursts of 10–20 minutes at 10–15x the base;
- flash:    quiet, then one flash spike that drains ~60 EUR in two minutes.
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


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, shape in (("steady", steady), ("diurnal", diurnal), ("campaign", campaign),
                        ("flash", flash)):  # fmt: skip
        rng = random.Random(name)
        lines = ["t,spend"]
        for t in range(SECONDS):
            lines.append(f"{t},{shape(t, rng):.4f}")
        (HERE / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
