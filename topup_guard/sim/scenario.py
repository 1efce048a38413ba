"""A simulation scenario: the account, Vonage's auto-reload and the demand, loaded from JSON.

The key names are a contract shared with the backtest. Unknown keys are refused (naming the key),
so a typo such as ``topup_ammount`` cannot silently fall back to a default. Money fields are read
as ``Decimal`` straight from the JSON text, never through a float.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from topup_guard.errors import ConfigError
from topup_guard.sim.spend import Burst, Phase, SpendProfile

_SUB_KEYS = {"api_key", "name", "balance", "credit_limit", "secret", "suspended"}
# A subaccount's own demand: the primary's spend keys, plus a constant rate (EUR/s).
_SUB_SPEND_KEYS = {"spend", "bursts", "repeat_every", "spend_rate"}


@dataclass(frozen=True)
class Scenario:
    """Everything needed to build a ``SimAccount``; times in simulated seconds, money in EUR."""

    initial_balance: Decimal
    topup_amount: Decimal
    autoreload_threshold: Decimal
    autoreload_check_min_s: float = 300.0
    autoreload_check_max_s: float = 600.0
    topup_latency_s: float = 2.0
    balance_latency_s: float = 0.3
    seed: int = 0
    guard: dict[str, Any] | None = None
    """Passed through for the backtest; its JSON numbers with a fraction arrive as Decimal."""
    auto_reload: bool = True
    message_price: Decimal = Decimal("0.0075")
    spend: tuple[Phase, ...] = ()
    bursts: tuple[Burst, ...] = ()
    repeat_every: float | None = None
    subaccounts: tuple[dict[str, Any], ...] = field(default=())
    signal_latency_s: float | None = None
    """Backtest only: every demand event also reaches the guard as a sender's balance signal,
    this many seconds later (``"signal": {"latency_s": 0.2}``); None: polling alone."""
    fleet_trace: str | None = None
    """A fleet trace CSV (``fleet/trace.py``) the simulator replays: demand per account. A
    relative path is relative to the scenario file (``load_scenario``)."""

    @classmethod
    def from_dict(cls, data: object, *, source: str = "scenario") -> Scenario:
        """Validate and convert parsed JSON (money as Decimal); ConfigError names every problem."""
        if not isinstance(data, dict):
            raise ConfigError([f"{source}: must be a JSON object"])
        known = {f.name for f in fields(cls)} - {"signal_latency_s"} | {"signal"}
        problems = [f"{source}: unknown key '{k}'" for k in data if k not in known]
        problems += [
            f"{source}: missing key '{k}'"
            for k in ("initial_balance", "topup_amount", "autoreload_threshold")
            if k not in data
        ]
        if problems:
            raise ConfigError(problems)
        try:
            return cls._convert(data)
        except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
            raise ConfigError([f"{source}: {exc}"]) from None

    @classmethod
    def _convert(cls, data: dict[str, Any]) -> Scenario:
        values = dict(data)
        signal = values.pop("signal", None)
        if signal is not None:
            if not isinstance(signal, dict) or set(signal) - {"latency_s"}:
                raise ValueError('signal: must be an object like {"latency_s": 0.2}')
            values["signal_latency_s"] = _number("signal.latency_s", signal.get("latency_s", 0.2))
        for key in ("initial_balance", "topup_amount", "autoreload_threshold", "message_price"):
            if key in values:
                values[key] = _money(key, values[key])
        for key in (
            "autoreload_check_min_s",
            "autoreload_check_max_s",
            "topup_latency_s",
            "balance_latency_s",
        ):
            if key in values:
                values[key] = _number(key, values[key])
        if values.get("repeat_every") is not None:
            values["repeat_every"] = _number("repeat_every", values["repeat_every"])
        values["spend"] = tuple(_phase(p) for p in values.get("spend") or [])
        values["bursts"] = tuple(_burst(b) for b in values.get("bursts") or [])
        values["subaccounts"] = tuple(_subaccount(s) for s in values.get("subaccounts") or [])
        if not isinstance(values.get("seed", 0), int):
            raise ValueError("seed: must be an integer")
        if not isinstance(values.get("auto_reload", True), bool):
            raise ValueError("auto_reload: must be true or false")
        if values.get("fleet_trace") is not None and not isinstance(values["fleet_trace"], str):
            raise ValueError("fleet_trace: must be the path of a fleet trace CSV")
        if values.get("guard") is not None and not isinstance(values["guard"], dict):
            raise ValueError("guard: must be an object")
        scenario = cls(**values)
        if not 0 < scenario.autoreload_check_min_s <= scenario.autoreload_check_max_s:
            raise ValueError("need 0 < autoreload_check_min_s <= autoreload_check_max_s")
        if scenario.message_price <= 0:
            raise ValueError("message_price: must be positive")
        return scenario

    def spend_profile(self) -> SpendProfile:
        return SpendProfile(list(self.spend), list(self.bursts), self.repeat_every)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; ConfigError on unreadable, invalid JSON or bad keys."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    scenario = parse_scenario(text, source=str(path))
    if scenario.fleet_trace is not None and not Path(scenario.fleet_trace).is_absolute():
        scenario = replace(scenario, fleet_trace=str(Path(path).parent / scenario.fleet_trace))
    return scenario


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{source}: invalid JSON ({exc.msg} at line {exc.lineno})"]) from None
    return Scenario.from_dict(data, source=source)


def default_scenario() -> Scenario:
    """The embedded bursty scenario: a trickle plus campaigns that outrun Vonage's auto-reload."""
    text = resources.files("topup_guard.sim").joinpath("scenarios/bursty.json").read_text("utf-8")
    return parse_scenario(text, source="bursty.json")


def _money(key: str, raw: object) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        raise ValueError(f"{key}: must be a number")
    value = Decimal(str(raw))
    if not value.is_finite():
        raise ValueError(f"{key}: must be finite")
    return value


def _number(key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        raise ValueError(f"{key}: must be a number")
    return float(raw)


def _checked(kind: str, raw: object, keys: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{kind}: each entry must be an object")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ValueError(f"{kind}: unknown key '{unknown[0]}'")
    missing = sorted(k for k in keys if k not in raw)
    if missing and kind != "subaccounts":
        raise ValueError(f"{kind}: missing key '{missing[0]}'")
    return raw


def _phase(raw: object) -> Phase:
    d = _checked("spend", raw, {"start", "end", "rate"})
    return Phase(_number("start", d["start"]), _number("end", d["end"]), _money("rate", d["rate"]))


def _burst(raw: object) -> Burst:
    d = _checked("bursts", raw, {"at", "duration", "rate"})
    return Burst(
        _number("at", d["at"]), _number("duration", d["duration"]), _money("rate", d["rate"])
    )


def _subaccount(raw: object) -> dict[str, Any]:
    """One subaccount entry; its spend keys become ``profile`` (a ``SpendProfile`` or None)."""
    d = dict(_checked("subaccounts", raw, _SUB_KEYS | _SUB_SPEND_KEYS))
    if not isinstance(d.get("api_key"), str) or not d["api_key"]:
        raise ValueError("subaccounts: api_key is required")
    key = d["api_key"]
    for name in ("balance", "credit_limit", "spend_rate"):
        if d.get(name) is not None:
            d[name] = _money(f"subaccounts[{key}].{name}", d[name])
    if d.get("credit_limit") is not None and d["credit_limit"] > 0:
        raise ValueError(f"subaccounts[{key}].credit_limit: must be zero or negative")
    if d.get("spend_rate") is not None and d["spend_rate"] < 0:
        raise ValueError(f"subaccounts[{key}].spend_rate: must not be negative")
    if not isinstance(d.get("suspended", False), bool):
        raise ValueError(f"subaccounts[{key}].suspended: must be true or false")
    phases = [_phase(p) for p in d.pop("spend", None) or []]
    bursts = [_burst(b) for b in d.pop("bursts", None) or []]
    repeat = d.pop("repeat_every", None)
    repeat_every = None if repeat is None else _number(f"subaccounts[{key}].repeat_every", repeat)
    d["profile"] = SpendProfile(phases, bursts, repeat_every) if phases or bursts else None
    return d
