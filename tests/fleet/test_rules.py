"""The fleet file: defaults, overrides by key or name pattern, exclusion, caps, and its mistakes."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topup_guard.errors import ConfigError
from topup_guard.fleet.rules import (
    RULE_FIELDS,
    AccountRules,
    FleetFileError,
    FleetRules,
    Override,
    load_fleet_file,
    parse_fleet,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.toml"


def write(tmp_path: Path, text: str, name: str = "fleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(FleetFileError) as caught:
        load_fleet_file(path)
    return caught.value.problems


def problem_of(tmp_path: Path, text: str) -> str:
    found = problems_of(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


# --- defaults and matching -------------------------------------------------------------------


def test_an_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    rules = load_fleet_file(write(tmp_path, ""))
    assert rules.defaults == AccountRules(
        floor=Decimal("5"),
        transfer_amount=Decimal("10"),
        max_transfers_per_hour=6,
        max_daily_amount=Decimal("200"),
        min_headroom=None,
        max_balance=None,
        excluded=False,
    )
    assert (rules.max_transfers_per_hour, rules.max_daily_amount) == (600, Decimal("5000"))
    assert rules.overrides == ()
    assert rules.source == str(tmp_path / "fleet.toml")


def test_defaults_apply_to_every_account_no_override_matches(tmp_path: Path) -> None:
    rules = load_fleet_file(
        write(
            tmp_path,
            '[defaults]\nfloor = 7\ntransfer_amount = "12.50"\nmin_headroom = 0\n'
            "max_balance = 400\n"
            '[[account]]\nkey = "qwer1234"\nfloor = 20\n',
        )
    )
    other = rules.for_account("asdf5678", "Customer B")
    assert other == AccountRules(
        floor=Decimal(7), transfer_amount=Decimal("12.50"), min_headroom=Decimal(0),
        max_balance=Decimal(400),
    )  # fmt: skip
    assert rules.for_account("qwer1234", None).floor == Decimal(20)


def test_a_plain_key_matches_only_that_exact_key(tmp_path: Path) -> None:
    rules = load_fleet_file(write(tmp_path, '[[account]]\nkey = "qwer1234"\nfloor = 20\n'))
    assert rules.for_account("qwer1234", None).floor == 20
    for other in ("qwer12345", "Qwer1234", "xqwer1234", "qwer123"):
        assert rules.for_account(other, None).floor == 5, other


def test_a_key_pattern_matches_every_key_it_describes(tmp_path: Path) -> None:
    rules = load_fleet_file(write(tmp_path, '[[account]]\nkey = "eu??*"\nfloor = 20\n'))
    assert rules.for_account("eu12abcd", None).floor == 20
    assert rules.for_account("eu1", None).floor == 5  # ? needs a character
    assert rules.for_account("us12abcd", "eu12abcd").floor == 5  # the name is not the key


def test_a_name_pattern_matches_on_the_name_and_never_an_unnamed_account(tmp_path: Path) -> None:
    rules = load_fleet_file(write(tmp_path, '[[account]]\nname = "test-*"\nexclude = true\n'))
    assert rules.for_account("aaaa1111", "test-acme").excluded
    assert not rules.for_account("aaaa1111", "prod-acme").excluded
    assert not rules.for_account("aaaa1111", "Test-acme").excluded  # case matters, as in keys
    assert not rules.for_account("test-acme", None).excluded  # a key is not a name


def test_an_override_with_key_and_name_needs_both_to_match() -> None:
    rules = FleetRules(overrides=(Override(key="a*", name="*vip*", floor=Decimal(50)),))
    assert rules.for_account("a1", "the vip one").floor == 50
    assert rules.for_account("b1", "the vip one").floor == 5
    assert rules.for_account("a1", "plain").floor == 5


def test_later_overrides_win_field_by_field(tmp_path: Path) -> None:
    rules = load_fleet_file(
        write(
            tmp_path,
            '[[account]]\nname = "*"\nfloor = 20\ntransfer_amount = 30\nmax_daily_amount = 300\n'
            '[[account]]\nkey = "qwer1234"\nfloor = 8\n',
        )
    )
    got = rules.for_account("qwer1234", "Acme")
    # floor from the later override, the transfer amount from the earlier, the rest by default
    assert (got.floor, got.transfer_amount, got.max_transfers_per_hour) == (
        Decimal(8),
        Decimal(30),
        6,
    )
    assert rules.for_account("zzzz0000", "Acme").floor == 20


_SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "floor": st.integers(1, 50).map(Decimal),
        "transfer_amount": st.integers(1, 50).map(Decimal),
        "max_transfers_per_hour": st.integers(1, 60),
        "min_headroom": st.integers(0, 50).map(Decimal),
        "excluded": st.booleans(),
    },
)


@given(st.lists(st.tuples(st.booleans(), _SETTINGS), max_size=6))
def test_the_rules_of_an_account_are_the_defaults_updated_by_each_matching_override_in_order(
    layers: list[tuple[bool, dict[str, object]]],
) -> None:
    overrides = tuple(Override(key="acct" if hit else "other", **kw) for hit, kw in layers)  # type: ignore[arg-type]
    expected: dict[str, object] = {f: getattr(AccountRules(), f) for f in RULE_FIELDS}
    for hit, kw in layers:
        if hit:
            expected.update(kw)
    assert FleetRules(overrides=overrides).for_account("acct", None) == AccountRules(**expected)  # type: ignore[arg-type]


def test_exclude_skips_an_account_and_a_later_exclude_false_includes_it_again(
    tmp_path: Path,
) -> None:
    rules = load_fleet_file(
        write(
            tmp_path,
            '[defaults]\nexclude = true\n[[account]]\nname = "prod-*"\nexclude = false\n'
            '[[account]]\nkey = "bad00000"\nexclude = true\n',
        )
    )
    assert rules.for_account("aaaa1111", "test-x").excluded
    assert not rules.for_account("aaaa1111", "prod-x").excluded
    assert rules.for_account("bad00000", "prod-x").excluded


def test_the_example_fleet_file_loads_and_means_what_its_comments_say() -> None:
    rules = load_fleet_file(EXAMPLE)
    assert rules.for_account("anykey01", "Acme").excluded is False
    assert rules.for_account("anykey01", "test-acme").excluded is True


def test_a_fleet_file_error_is_a_configuration_error_so_commands_exit_2() -> None:
    assert issubclass(FleetFileError, ConfigError)


# --- mistakes: each names the file, the table and the key, and says how to fix it -----------

# A fix is an example of a valid value or an instruction; every message carries one of these.
_FIXES = ("such as", "did you mean", "give ", "add a rule", "move it", "check the path",
          "fix it", "save it", "lower ", "raise it", "settings go in", "the tables are",
          "the settings there are", "must be tables written", "must be one table written",
          "includes an excluded one again", "go in [defaults]", "true or false")  # fmt: skip

BROKEN = """
floor = 3
[fleet]
floor = 3
max_daily_amont = 5
max_transfers_per_hour = 1.5
[default]
[defaults]
floor = -3
transfer_amount = 10.001
max_transfers_per_hour = 0
exclude = "yes"
key = "x"
[[account]]
floor = 20
[[account]]
key = "a*"
[[account]]
name = ""
excluded = true
include = true
min_headroom = true
[[account]]
key = "c"
max_balance = "lots"
wibble = 1
"""


def test_every_problem_is_reported_at_once_naming_the_place_and_the_fix(tmp_path: Path) -> None:
    found = problems_of(tmp_path, BROKEN)
    prefix = f"fleet file {tmp_path / 'fleet.toml'}: "
    places = [
        "floor", "[default]", "[fleet] floor", "[fleet] max_daily_amont",
        "[fleet] max_transfers_per_hour", "[defaults] floor", "[defaults] transfer_amount",
        "[defaults] max_transfers_per_hour", "[defaults] exclude", "[defaults] key",
        "[[account]] #1", "[[account]] #2", "[[account]] #3 name", "[[account]] #3 excluded",
        "[[account]] #3 include", "[[account]] #3 min_headroom", "[[account]] #4 max_balance",
        "[[account]] #4 wibble",
    ]  # fmt: skip
    assert [p.removeprefix(prefix).partition(": ")[0] for p in found] == places
    for line in found:
        assert line.startswith(prefix), line
        assert any(fix in line for fix in _FIXES), f"no fix in: {line}"


def test_a_negative_floor_in_an_override_names_the_override(tmp_path: Path) -> None:
    found = problems_of(tmp_path, '[[account]]\nkey = "k"\nfloor = 2\n[[account]]\nkey = "x"\n'
                        'floor = "-3"\n')  # fmt: skip
    assert found == [
        f"fleet file {tmp_path / 'fleet.toml'}: [[account]] #2 floor: must be an amount in EUR "
        'greater than 0 with at most 2 decimals, such as 12.50, got "-3"'
    ]


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        (
            "[defaults]\nflor = 5\n",
            "[defaults] flor: not a setting of [defaults]; did you mean floor?",
        ),
        ('[[account]]\nkey = "k"\nexcluded = true\n', "did you mean exclude?"),
        ('[[account]]\nkye = "k"\nfloor = 1\n', "did you mean key?"),
        ("[fleet]\nmax_daily_amont = 5\n", "did you mean max_daily_amount?"),
        (
            "[default]\nfloor = 5\n",
            "[default]: not a table of the fleet file; did you mean [defaults]?",
        ),
        ('[[acount]]\nkey = "k"\n', "did you mean [[account]]?"),
    ],
)
def test_an_unknown_key_names_the_setting_it_was_probably_meant_to_be(
    tmp_path: Path, text: str, suggestion: str
) -> None:
    assert any(suggestion in line for line in problems_of(tmp_path, text))


def test_an_unknown_key_that_resembles_nothing_lists_the_valid_ones(tmp_path: Path) -> None:
    line = problem_of(tmp_path, "[fleet]\nwibble = 1\n")
    assert line.endswith("the settings there are max_transfers_per_hour, max_daily_amount")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("[[defaults]]\nfloor = 5\n", "[defaults]: must be one table written [defaults]"),
        (
            '[account]\nkey = "k"\n',
            "[[account]]: must be tables written [[account]] (two brackets)",
        ),
        ('account = ["k"]\n', "[[account]]: must be tables written [[account]]"),
    ],
)
def test_a_table_written_with_the_wrong_brackets_says_which_to_use(
    tmp_path: Path, text: str, what: str
) -> None:
    assert what in problem_of(tmp_path, text)


# --- money and caps --------------------------------------------------------------------------

_CENTS = st.integers(1, 10**8).map(lambda c: Decimal(c) / 100)


@given(_CENTS, st.sampled_from(["int", "float", "string"]))
def test_an_amount_of_whole_cents_is_read_exactly_however_it_is_written(
    amount: Decimal, style: str
) -> None:
    if style == "int":
        written: object = int(amount) if amount == int(amount) else str(amount)
    elif style == "float":
        written = float(amount)
    else:
        written = f"{amount}"
    rules = parse_fleet({"defaults": {"floor": written}}, "f.toml")
    assert rules.defaults.floor == amount
    assert rules.defaults.floor == Decimal(str(written))


@given(st.integers(1, 10**6), st.integers(1, 9))
def test_an_amount_with_a_fraction_of_a_cent_is_refused_never_rounded(
    cents: int, extra: int
) -> None:
    amount = Decimal(cents) / 100 + Decimal(extra) / 1000
    with pytest.raises(FleetFileError) as caught:
        parse_fleet({"defaults": {"transfer_amount": str(amount)}}, "f.toml")
    assert caught.value.problems == [
        f"fleet file f.toml: [defaults] transfer_amount: must have at most 2 decimals (cents), "
        f'such as 12.50, got "{amount}"'
    ]


def test_trailing_zeros_are_not_extra_decimals() -> None:
    rules = parse_fleet({"defaults": {"floor": "12.5000", "transfer_amount": 1e1}}, "f.toml")
    assert (rules.defaults.floor, rules.defaults.transfer_amount) == (Decimal("12.5"), Decimal(10))


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        "0",
        "-0.01",
        True,
        "abc",
        "",
        float("nan"),
        float("inf"),
        "NaN",
        "Infinity",
        [5],
        {"eur": 5},
    ],
)
def test_an_amount_that_is_not_a_positive_sum_of_money_is_refused(value: object) -> None:
    with pytest.raises(FleetFileError) as caught:
        parse_fleet({"defaults": {"floor": value}}, "f.toml")
    (line,) = caught.value.problems
    assert line.startswith("fleet file f.toml: [defaults] floor: must be an amount in EUR greater")


def test_a_headroom_of_zero_is_allowed_as_in_the_single_account_setting() -> None:
    assert parse_fleet({"defaults": {"min_headroom": 0}}, "f").defaults.min_headroom == 0
    with pytest.raises(FleetFileError, match="min_headroom: must be an amount in EUR of 0 or more"):
        parse_fleet({"defaults": {"min_headroom": -1}}, "f")


@pytest.mark.parametrize("value", [0, -1, 1.0, "6", True])
@pytest.mark.parametrize(
    ("table", "key"),
    [("defaults", "max_transfers_per_hour"), ("fleet", "max_transfers_per_hour")],
)
def test_a_cap_must_be_a_positive_whole_number(value: object, table: str, key: str) -> None:
    with pytest.raises(FleetFileError) as caught:
        parse_fleet({table: {key: value}}, "f.toml")
    assert caught.value.problems == [
        f"fleet file f.toml: [{table}] {key}: must be a whole number of 1 or more, such as 6, "
        f"got {value!r}".replace("True", "true").replace("'6'", '"6"')
    ]


@pytest.mark.parametrize("table", ["defaults", "fleet"])
def test_a_daily_amount_of_zero_is_refused(table: str) -> None:
    with pytest.raises(FleetFileError, match=rf"\[{table}\] max_daily_amount: must be an amount"):
        parse_fleet({table: {"max_daily_amount": 0}}, "f.toml")


def test_a_transfer_larger_than_the_daily_cap_is_refused_where_it_is_set(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        '[defaults]\nmax_daily_amount = 100\n[[account]]\nkey = "a"\ntransfer_amount = 150\n'
        '[[account]]\nkey = "b"\nfloor = 9\n[[account]]\nkey = "c"\ntransfer_amount = 150\n'
        "exclude = true\n",
    )
    assert len(found) == 1
    assert (
        "[[account]] #1 transfer_amount: EUR 150 is more than max_daily_amount (EUR 100)"
        in found[0]
    )
    assert "lower the one or raise the other" in found[0]


def test_a_transfer_larger_than_the_fleet_daily_cap_is_refused() -> None:
    with pytest.raises(FleetFileError, match=r"\[defaults\] transfer_amount: EUR 60 is more than "
                       r"the fleet-wide \[fleet\] max_daily_amount \(EUR 50\)"):  # fmt: skip
        parse_fleet({"fleet": {"max_daily_amount": 50},
                     "defaults": {"transfer_amount": 60, "max_daily_amount": 60}}, "f")  # fmt: skip


def test_a_max_balance_at_or_below_the_floor_is_refused() -> None:
    with pytest.raises(FleetFileError, match=r"max_balance: EUR 20 must be above floor \(EUR 20\)"):
        parse_fleet({"account": [{"name": "x", "floor": 20, "max_balance": 20}]}, "f")


# --- the file itself ---------------------------------------------------------------------------


def test_a_missing_file_names_the_path_and_says_to_check_it(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError) as caught:
        load_fleet_file(tmp_path / "nope.toml")
    assert caught.value.problems == [
        f"fleet file {tmp_path / 'nope.toml'}: cannot read it (No such file or directory); "
        "check the path and that the guard's user may read the file"
    ]


def test_a_directory_is_not_a_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError, match="cannot read it"):
        load_fleet_file(tmp_path)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    line = problem_of(tmp_path, "[defaults]\nfloor = 5\nfloor 6\n")
    assert line.startswith(f"fleet file {tmp_path / 'fleet.toml'}: not valid TOML: ")
    assert "line 3" in line
    assert line.endswith("; fix it there")


def test_a_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in problem_of(tmp_path, "[defaults]\nfloor = 5\nfloor = 6\n")


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_bytes(b'[[account]]\nname = "caf\xe9"\nfloor = 5\n')
    with pytest.raises(FleetFileError, match="not UTF-8 text; save it as UTF-8"):
        load_fleet_file(path)


# --- fingerprint -------------------------------------------------------------------------------

BASE = (
    '[fleet]\nmax_daily_amount = 5000\n[defaults]\nfloor = 5\n[[account]]\nkey = "q"\nfloor = 20\n'
)


@pytest.mark.parametrize(
    "changed",
    [
        BASE.replace("5000", "4000"),
        BASE.replace("floor = 5\n", "floor = 6\n"),
        BASE.replace("floor = 20", "floor = 21"),
        BASE.replace('key = "q"', 'key = "q*"'),
        BASE.replace('key = "q"', 'name = "q"'),
        BASE + '[[account]]\nname = "t*"\nexclude = true\n',
        BASE.replace("[defaults]\n", "[defaults]\nmax_balance = 99\n"),
    ],
)
def test_the_fingerprint_changes_when_a_rule_in_the_file_changes(
    tmp_path: Path, changed: str
) -> None:
    before = load_fleet_file(write(tmp_path, BASE)).fingerprint()
    after = load_fleet_file(write(tmp_path, changed)).fingerprint()
    assert before != after
    assert re.fullmatch("[0-9a-f]{12}", after)


def test_the_fingerprint_changes_when_overrides_swap_places(tmp_path: Path) -> None:
    a = '[[account]]\nkey = "*"\nfloor = 1\n[[account]]\nkey = "q"\nfloor = 2\n'
    b = '[[account]]\nkey = "q"\nfloor = 2\n[[account]]\nkey = "*"\nfloor = 1\n'
    assert (
        load_fleet_file(write(tmp_path, a)).fingerprint()
        != load_fleet_file(write(tmp_path, b, "b.toml")).fingerprint()
    )


def test_the_fingerprint_ignores_comments_layout_the_path_and_how_an_amount_is_written(
    tmp_path: Path,
) -> None:
    same = (
        '# rules\n[fleet]\nmax_daily_amount = "5000.00"\n\n[defaults]\nfloor = 5.0\n'
        '[[account]]  # vip\nkey = "q"\nfloor = "20"\n'
    )
    one = load_fleet_file(write(tmp_path, BASE)).fingerprint()
    assert load_fleet_file(write(tmp_path, same, "other.toml")).fingerprint() == one


# --- the README says what the code does ----------------------------------------------------------

README = ROOT / "README.md"


def fleet_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Fleet mode (subaccounts)\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_fleet_file_example_loads_and_means_what_its_comments_say() -> None:
    block = fleet_section().split("```toml\n", 1)[1].split("```", 1)[0]
    rules = parse_fleet(tomllib.loads(block), "README.md")
    assert rules.for_account("qwer1234", "Acme").floor == Decimal(20)
    assert rules.for_account("zzzz0000", "test-7").excluded
    assert rules == replace(load_fleet_file(EXAMPLE), source="README.md", overrides=rules.overrides)


def test_the_readme_error_examples_are_the_messages_the_guard_prints() -> None:
    shown = [line.strip() for line in fleet_section().splitlines() if "topup-guard: " in line]
    assert len(shown) == 2
    source = "/etc/topup-guard/fleet.toml"
    with pytest.raises(FleetFileError) as caught:
        parse_fleet({"account": [{"key": "a", "floor": 9}, {"key": "b", "flor": 9}]}, source)
    with pytest.raises(FleetFileError) as caught2:
        parse_fleet({"defaults": {"transfer_amount": "10.005"}}, source)
    printed = caught.value.problems[:1] + caught2.value.problems
    assert shown == [f"topup-guard: TOPUP_GUARD_FLEET_FILE: {line}" for line in printed]
