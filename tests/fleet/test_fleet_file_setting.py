"""TOPUP_GUARD_FLEET_FILE is checked with the other settings: a bad file stops the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import clean_env
from topup_guard.cli import main
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.errors import ConfigError

GOOD = '[defaults]\nfloor = 5\n[[account]]\nname = "test-*"\nexclude = true\n'


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A valid configuration whose Vonage is never reached (every case here fails earlier)."""
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VONAGE_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("VONAGE_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("TOPUP_GUARD_TRX", DEMO_TRX)
    monkeypatch.setenv("TOPUP_GUARD_REST_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TOPUP_GUARD_API_URL", "http://127.0.0.1:9")
    return monkeypatch


def test_without_a_fleet_file_the_guard_watches_one_account() -> None:
    assert load_settings({}).fleet_file is None


def test_a_valid_fleet_file_is_a_path_in_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(GOOD, encoding="utf-8")
    settings = load_settings({"TOPUP_GUARD_FLEET_FILE": str(path)})
    assert settings.fleet_file == path
    assert settings.masked()["TOPUP_GUARD_FLEET_FILE"] == str(path)


def test_a_missing_fleet_file_is_a_configuration_problem_naming_the_variable(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"TOPUP_GUARD_FLEET_FILE": str(tmp_path / "nope.toml")})
    assert caught.value.problems == [
        f"TOPUP_GUARD_FLEET_FILE: fleet file {tmp_path / 'nope.toml'}: cannot read it (No such "
        "file or directory); check the path and that the guard's user may read the file"
    ]


def test_each_problem_of_the_file_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("[defaults]\nflor = 5\nfloor = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings({"TOPUP_GUARD_FLEET_FILE": str(path), "TOPUP_GUARD_MIN_BALANC": "1"})
    lines = caught.value.problems
    assert [line.partition(":")[0] for line in lines] == [
        "TOPUP_GUARD_MIN_BALANC",
        "TOPUP_GUARD_FLEET_FILE",
        "TOPUP_GUARD_FLEET_FILE",
    ]
    assert "[defaults] flor: not a setting of [defaults]; did you mean floor?" in lines[1]
    assert "[defaults] floor: must be an amount in EUR greater than 0" in lines[2]


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_exit_2_on_a_broken_fleet_file_before_anything_starts(
    configured: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[[account]]\nkey = "qwer1234"\nfloor = "12.505"\n', encoding="utf-8")
    configured.setenv("TOPUP_GUARD_FLEET_FILE", str(path))
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"topup-guard: TOPUP_GUARD_FLEET_FILE: fleet file {path}: [[account]] #1 floor: must have "
        'at most 2 decimals (cents), such as 12.50, got "12.505"\n'
    )


@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_exit_2_when_the_fleet_file_is_missing(
    configured: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
) -> None:
    configured.setenv("TOPUP_GUARD_FLEET_FILE", str(tmp_path / "gone.toml"))
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("topup-guard: TOPUP_GUARD_FLEET_FILE: fleet file ")
    assert "cannot read it (No such file or directory); check the path" in err


def test_a_secret_pasted_into_the_fleet_file_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(f'[[account]]\nkey = "k"\nfloor = "{DEMO_API_SECRET}"\n', encoding="utf-8")
    env = {"TOPUP_GUARD_FLEET_FILE": str(path), "VONAGE_API_SECRET": DEMO_API_SECRET}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    (line,) = caught.value.problems
    assert DEMO_API_SECRET not in line
    assert line.endswith('[[account]] #1 floor: must be an amount in EUR greater than 0 with at '
                         'most 2 decimals, such as 12.50, got "******"')  # fmt: skip
