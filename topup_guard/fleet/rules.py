"""The fleet file (TOML): funding rules per subaccount, as defaults, overrides and fleet-wide caps.

```toml
[fleet]                  # fleet-wide caps over every transfer
max_transfers_per_hour = 600
max_daily_amount = 5000
[defaults]               # every subaccount
floor = 5
[[account]]              # overrides, in file order: later ones win field by field
key = "qwer1234"         # key and name are fnmatch patterns (* ? [..]); both given: both match
floor = 20
[[account]]
name = "test-*"
exclude = true           # a later override with exclude = false includes an account again
```

Everything is checked when the file is loaded and every problem is reported at once, each naming
the file, the table and the key, and saying what a valid value looks like: a fleet file is edited
by hand under pressure, and an unknown key that passed silently would be a rule that never applies.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from topup_guard.errors import ConfigError
from topup_guard.fleet.rules_values import BadValue, closest, count, flag, money, pattern, shown


class FleetFileError(ConfigError):
    """The fleet file is missing, unreadable or invalid; one line in ``problems`` per problem."""


@dataclass(frozen=True, slots=True)
class AccountRules:
    """How the guard funds one subaccount (the defaults are those of an empty fleet file)."""

    floor: Decimal = Decimal("5")
    """EUR the balance is kept at least."""
    transfer_amount: Decimal = Decimal("10")
    """EUR one transfer moves."""
    max_transfers_per_hour: int = 6
    """Most transfers to this subaccount in any rolling hour."""
    max_daily_amount: Decimal = Decimal("200")
    """Most EUR transferred to this subaccount in any rolling 24 hours."""
    min_headroom: Decimal | None = None
    """EUR kept in hand above the floor, as TOPUP_GUARD_MIN_HEADROOM; None: one transfer."""
    max_balance: Decimal | None = None
    """EUR the guard builds up at most, as TOPUP_GUARD_MAX_BALANCE; None: no limit."""
    excluded: bool = False
    """Skip this account (it is reported as excluded, never funded)."""


RULE_FIELDS = tuple(f.name for f in fields(AccountRules))


@dataclass(frozen=True, slots=True)
class Override:
    """One ``[[account]]`` table: which accounts it matches and the fields it sets (None: not)."""

    key: str | None = None
    """fnmatch pattern on the API key (case-sensitive); a plain key matches only itself."""
    name: str | None = None
    """fnmatch pattern on the account's name; never matches an account without a name."""
    floor: Decimal | None = None
    transfer_amount: Decimal | None = None
    max_transfers_per_hour: int | None = None
    max_daily_amount: Decimal | None = None
    min_headroom: Decimal | None = None
    max_balance: Decimal | None = None
    excluded: bool | None = None
    where: str = "[[account]]"
    """The table in the file (``[[account]] #2``), for messages."""

    def matches(self, api_key: str, name: str | None) -> bool:
        if self.key is not None and not fnmatchcase(api_key, self.key):
            return False
        return self.name is None or (name is not None and fnmatchcase(name, self.name))

    def changes(self) -> dict[str, Any]:
        """The fields this override sets, by AccountRules field name."""
        return {f: v for f in RULE_FIELDS if (v := getattr(self, f)) is not None}


@dataclass(frozen=True, slots=True)
class FleetRules:
    """The whole fleet file. Immutable: ``for_account`` is a pure function of its arguments, so
    callers may cache its answer per (key, name) for as long as they hold these rules."""

    defaults: AccountRules = AccountRules()
    overrides: tuple[Override, ...] = ()
    """In file order; later overrides win field by field."""
    max_transfers_per_hour: int = 600
    """Most transfers to all subaccounts together in any rolling hour."""
    max_daily_amount: Decimal = Decimal("5000")
    """Most EUR transferred to all subaccounts together in any rolling 24 hours."""
    source: str = "(built-in defaults)"
    """The file path, for messages."""

    def for_account(self, api_key: str, name: str | None) -> AccountRules:
        rules = self.defaults
        for override in self.overrides:
            if override.matches(api_key, name):
                rules = replace(rules, **override.changes())
        return rules

    def fingerprint(self) -> str:
        """12 hex digits that change whenever a rule changes (the path, comments, layout and
        10 written as 10.00 do not count), so /status and logs show which rules are in force."""
        canon = {
            "fleet": [self.max_transfers_per_hour, _canon(self.max_daily_amount)],
            "defaults": {f: _canon(getattr(self.defaults, f)) for f in RULE_FIELDS},
            "overrides": [
                [o.key, o.name, {f: _canon(v) for f, v in o.changes().items()}]
                for o in self.overrides
            ],
        }
        text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _canon(value: object) -> object:
    return f"{value.normalize():f}" if isinstance(value, Decimal) else value


def load_fleet_file(path: str | Path) -> FleetRules:
    """Read and check the fleet file at ``path``; raise FleetFileError listing every problem."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        where = f"fleet file {source}: cannot read it ({why})"
        fix = "check the path and that the guard's user may read the file"
        raise FleetFileError([f"{where}; {fix}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise FleetFileError([f"fleet file {source}: not UTF-8 text; save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(
            [f"fleet file {source}: not valid TOML: {exc}; fix it there"]
        ) from None
    return parse_fleet(data, source)


# The key in the file → (AccountRules field, how its value is read).
_RULES: dict[str, tuple[str, Callable[[object], object]]] = {
    "floor": ("floor", money),
    "transfer_amount": ("transfer_amount", money),
    "max_transfers_per_hour": ("max_transfers_per_hour", count),
    "max_daily_amount": ("max_daily_amount", money),
    "min_headroom": ("min_headroom", lambda v: money(v, zero_ok=True)),
    "max_balance": ("max_balance", money),
    "exclude": ("excluded", flag),
}
_MATCH: dict[str, tuple[str, Callable[[object], object]]] = {
    "key": ("key", pattern),
    "name": ("name", pattern),
}
_FLEET: dict[str, tuple[str, Callable[[object], object]]] = {
    "max_transfers_per_hour": ("max_transfers_per_hour", count),
    "max_daily_amount": ("max_daily_amount", money),
}
_TABLES = {"fleet": "[fleet]", "defaults": "[defaults]", "account": "[[account]]"}


def parse_fleet(data: Mapping[str, Any], source: str) -> FleetRules:
    """FleetRules from a parsed TOML document; FleetFileError naming every problem."""
    reader = _Reader(source)
    for name, value in data.items():
        if name in _TABLES:
            continue
        tables = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        if not isinstance(value, dict) and not tables:
            hint = "settings go in [fleet] (fleet-wide caps), [defaults] or an [[account]] table"
            reader.problem(name, f"not a setting of the top level; {hint}")
            continue
        near = closest(name, _TABLES)
        hint = (
            f"did you mean {_TABLES[near]}?"
            if near
            else "the tables are " + ", ".join(_TABLES.values())
        )
        written = f"[[{name}]]" if tables else f"[{name}]"
        reader.problem(written, f"not a table of the fleet file; {hint}")
    fleet = reader.values(reader.table(data, "fleet"), "[fleet]", _FLEET)
    defaults = AccountRules(**reader.values(reader.table(data, "defaults"), "[defaults]", _RULES))
    rules = FleetRules(
        defaults=defaults, overrides=reader.overrides(data.get("account", [])), source=source
    )
    rules = replace(rules, **fleet)
    if not reader.problems:  # the rules below compare values that are each valid
        _consistent(reader, rules)
    if reader.problems:
        raise FleetFileError(reader.problems)
    return rules


class _Reader:
    """Collects every problem of one file, each as ``fleet file F: <table> <key>: <what>``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, place: str, what: str) -> None:
        self.problems.append(f"fleet file {self.source}: {place}: {what}")

    def table(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if isinstance(value, dict):
            return value
        self.problem(_TABLES[name], f"must be one table written [{name}], got {shown(value)}")
        return {}

    def values(
        self,
        table: Mapping[str, Any],
        where: str,
        known: Mapping[str, tuple[str, Callable[[object], object]]],
    ) -> dict[str, Any]:
        """The table's values by field name; a problem for each unknown key and bad value."""
        out: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in known:
                self.problem(f"{where} {key}", _unknown_key(key, where, known))
                continue
            field, read = known[key]
            try:
                out[field] = read(raw)
            except BadValue as exc:
                self.problem(f"{where} {key}", f"{exc}, got {shown(raw)}")
        return out

    def overrides(self, tables: object) -> tuple[Override, ...]:
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.problem(
                "[[account]]",
                "must be tables written [[account]] (two brackets), one per override, "
                f"got {shown(tables)}",
            )
            return ()
        found: list[Override] = []
        for number, table in enumerate(tables, start=1):
            where = f"[[account]] #{number}"
            values = self.values(table, where, {**_MATCH, **_RULES})
            if "key" not in table and "name" not in table:
                self.problem(where, 'matches no account: give key = "…" or name = "…" (or both)')
            elif not set(table) - set(_MATCH):
                self.problem(where, "sets nothing: add a rule such as floor = 20 or exclude = true")
            found.append(Override(**values, where=where))
        return tuple(found)


def _unknown_key(key: str, where: str, known: Mapping[str, object]) -> str:
    what = f"not a setting of {where.split(' #')[0]}"
    if key in _MATCH and not where.startswith("[[account]]"):
        return f"{what}: only [[account]] tables match accounts; move it into one"
    if key == "include":
        return (
            f"{what}: every account is included unless excluded, and a later [[account]] "
            "with exclude = false includes an excluded one again"
        )
    if key in _RULES and where == "[fleet]":
        return f"{what}: rules per account go in [defaults] or an [[account]] table"
    near = closest(key, known)
    if near is not None:
        return f"{what}; did you mean {near}? (a typo would be a rule that never applies)"
    return f"{what}; the settings there are {', '.join(known)}"


def _consistent(reader: _Reader, rules: FleetRules) -> None:
    """Combinations that would leave an account unfundable, for the defaults and for each
    override laid over the defaults alone (which overrides meet depends on the accounts)."""
    cases = [("[defaults]", rules.defaults, set(RULE_FIELDS))]
    cases += [
        (o.where, replace(rules.defaults, **o.changes()), set(o.changes())) for o in rules.overrides
    ]
    for where, account, touched in cases:
        if account.excluded:
            continue
        amount = account.transfer_amount
        if amount > account.max_daily_amount and touched & {"transfer_amount", "max_daily_amount"}:
            reader.problem(
                f"{where} transfer_amount",
                f"EUR {amount} is more than max_daily_amount (EUR {account.max_daily_amount}), so "
                "the cap would refuse every transfer; lower the one or raise the other",
            )
        if amount > rules.max_daily_amount and "transfer_amount" in touched:
            reader.problem(
                f"{where} transfer_amount",
                f"EUR {amount} is more than the fleet-wide [fleet] max_daily_amount "
                f"(EUR {rules.max_daily_amount}), so every transfer would be refused; lower it "
                "or raise that cap",
            )
        top = account.max_balance
        if top is not None and top <= account.floor and touched & {"max_balance", "floor"}:
            reader.problem(
                f"{where} max_balance",
                f"EUR {top} must be above floor (EUR {account.floor}); raise it or remove it",
            )
