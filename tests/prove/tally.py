"""Print the proof suite's tally: ``python -m tests.prove.tally`` (after ``make test``).

Reads ``tests/prove/.tally.json`` (written by ``tests/prove/conftest.py``) and prints one
Markdown table per test module, the form the README's "Evidence" section uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TALLY_PATH = Path(__file__).with_name(".tally.json")


def render(data: dict[str, object]) -> str:
    modules = data.get("modules", {})
    assert isinstance(modules, dict)
    lines = [f"Tally written {data.get('written_at', '?')} by `tests/prove/`:", ""]
    for module in sorted(modules):
        lines += [f"**{module}**", "", "| count | value |", "|---|---:|"]
        for key, value in sorted(modules[module].items()):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    try:
        data = json.loads(TALLY_PATH.read_text(encoding="utf-8"))
    except OSError:
        print(f"no tally at {TALLY_PATH}: run `make test` (or pytest -m 'slow or not slow' "
              "tests/prove) first", file=sys.stderr)  # fmt: skip
        return 1
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
