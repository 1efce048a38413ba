"""Configuration mistakes are caught: typos, NaN/inf, empty secret files, broken pipes."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env
from topup_guard.cli import main
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, Settings, env_name

ROOT = Path(__file__).resolve().parents[2]


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


def problems(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv) or ["check"])
    return code, capsys.readouterr().err


def test_a_typo_in_a_variable_name_exits_2_naming_the_right_one(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.setenv("TOPUP_GUARD_MIN_BALANC", "20")
    code, err = problems(capsys, "check")
    assert code == 2
    assert "TOPUP_GUARD_MIN_BALANC: not a variable" in err
    assert "did you mean TOPUP_GUARD_MIN_BALANCE?" in err


def test_the_typo_check_also_runs_from_a_real_shell(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TOPUP_GUARD_MIN_BALANC": "20", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "topup-guard"), "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "TOPUP_GUARD_MIN_BALANCE" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("TOPUP_GUARD_POLL_INTERVALL", "TOPUP_GUARD_POLL_INTERVAL"),
        ("TOPUP_GUARD_API_SECRET", "VONAGE_API_SECRET"),
        ("TOPUP_GUARD_TRX_FIEL", "TOPUP_GUARD_TRX_FILE"),
        ("VONAGE_API_SECRT", "VONAGE_API_SECRET"),
        ("VONAGE_APIKEY", "VONAGE_API_KEY"),
    ],
)
def test_near_misses_are_refused_with_the_closest_name(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, suggestion: str
) -> None:
    configured.setenv(name, "value-that-must-not-be-shown")
    code, err = problems(capsys, "config")
    assert code == 2
    assert f"{name}: not a variable topup-guard reads; did you mean {suggestion}?" in err
    assert "value-that-must-not-be-shown" not in err


def test_a_file_variant_of_a_plain_setting_says_only_secrets_have_one(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.setenv("TOPUP_GUARD_MIN_BALANCE_FILE", "/run/secrets/floor")
    code, err = problems(capsys, "config")
    assert code == 2
    assert "only secrets have a _FILE variant; set TOPUP_GUARD_MIN_BALANCE" in err


def test_an_unknown_name_without_a_close_match_gets_no_wrong_suggestion(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.setenv("TOPUP_GUARD_ZZZ", "1")
    code, err = problems(capsys, "config")
    assert code == 2
    assert "TOPUP_GUARD_ZZZ: not a variable topup-guard reads" in err
    assert "did you mean" not in err


def test_other_tools_variables_and_file_variants_of_secrets_are_accepted(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = tmp_path / "trx"
    secret.write_text(DEMO_TRX)
    configured.delenv("TOPUP_GUARD_TRX")
    configured.setenv("TOPUP_GUARD_TRX_FILE", str(secret))
    configured.setenv("OTEL_SERVICE_NAME", "guard")
    configured.setenv("VONAGE_APPLICATION_ID", "aaaaaaaa-bbbb")  # the Vonage SDK's, not ours
    configured.setenv("VONAGE_PRIVATE_KEY_PATH", "/keys/private.key")
    assert main(["config"]) == 0, capsys.readouterr().err


def test_kubernetes_service_links_of_a_service_named_topup_guard_are_accepted(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What every pod in the namespace of `kind: Service, name: topup-guard` receives.
    links = {
        "TOPUP_GUARD_SERVICE_HOST": "10.96.12.7",
        "TOPUP_GUARD_SERVICE_PORT": "8080",
        "TOPUP_GUARD_SERVICE_PORT_HTTP": "8080",
        "TOPUP_GUARD_PORT": "tcp://10.96.12.7:8080",
        "TOPUP_GUARD_PORT_8080_TCP": "tcp://10.96.12.7:8080",
        "TOPUP_GUARD_PORT_8080_TCP_PROTO": "tcp",
        "TOPUP_GUARD_PORT_8080_TCP_PORT": "8080",
        "TOPUP_GUARD_PORT_8080_TCP_ADDR": "10.96.12.7",
        "TOPUP_GUARD_METRICS_SERVICE_HOST": "fd00::7",
    }
    for name, value in links.items():
        configured.setenv(name, value)
    assert main(["config"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOPUP_GUARD_HELTH_PORT", "8080"), ("TOPUP_GUARD_SERVICE_HOST", "not an address")],
)
def test_a_typo_shaped_like_a_service_link_is_still_caught(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    configured.setenv(name, value)
    code, err = problems(capsys, "config")
    assert code == 2
    assert f"{name}: not a variable topup-guard reads" in err


FINITE_FIELDS = [
    name
    for name, info in Settings.model_fields.items()
    if info.annotation in (float, Decimal, Decimal | None, float | None)
]


def test_every_number_setting_is_covered() -> None:
    assert len(FINITE_FIELDS) >= 15  # every float and every money setting of the reference


@pytest.mark.parametrize("field", FINITE_FIELDS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", "NaN"])
def test_nan_and_infinity_are_refused_for_every_number_with_the_value_shown(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    configured.setenv(env_name(field), value)
    code, err = problems(capsys, "config")
    assert code == 2
    assert f"{env_name(field)}: must be a finite number, not '{value}'" in err


@pytest.mark.parametrize(
    ("name", "value", "sentence"),
    [
        ("TOPUP_GUARD_POLL_INTERVAL", "0.1", "must be at least 0.5, not '0.1'"),
        ("TOPUP_GUARD_HTTP_TIMEOUT", "500", "must be at most 120, not '500'"),
        ("TOPUP_GUARD_MIN_BALANCE", "ten", "must be a decimal number such as 12.50, not 'ten'"),
        ("TOPUP_GUARD_MAX_TOPUPS_PER_HOUR", "2.5", "must be a whole number, not '2.5'"),
        ("TOPUP_GUARD_DRY_RUN", "maybe", "must be true or false, not 'maybe'"),
        ("TOPUP_GUARD_LOG_FORMAT", "xml", "must be 'json' or 'text', not 'xml'"),
        ("TOPUP_GUARD_REST_URL", "ftp://x", "must be an http(s) URL (got ftp://)"),
    ],
)
def test_problems_are_plain_sentences_with_the_bad_value(
    configured: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    sentence: str,
) -> None:
    configured.setenv(name, value)
    code, err = problems(capsys, "config")
    assert code == 2
    assert f"topup-guard: {name}: {sentence} (for example {name}=" in err
    assert "Input should" not in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOPUP_GUARD_POLL_MIN", DEMO_API_SECRET),  # a secret pasted into the wrong variable
        ("TOPUP_GUARD_HORIZON", "xoxb-1234-5678-abcdefghijklmnopqrstuvwxyz0123"),  # long: a token
        ("TOPUP_GUARD_REST_URL", f"https://{DEMO_API_KEY}:{DEMO_API_SECRET}@rest.example/"),
    ],
)
def test_a_bad_value_that_may_be_a_secret_is_not_shown(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    configured.setenv(name, value)
    code, err = problems(capsys, "config")
    assert code == 2
    assert name in err
    assert value not in err
    assert DEMO_API_SECRET not in err


def test_a_bad_redis_url_names_the_scheme_but_never_the_password(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured.setenv("TOPUP_GUARD_REDIS_URL", "http://guard:Pa55word@cache.internal:6379/0")
    code, err = problems(capsys, "check")
    assert code == 2
    assert "REDIS_URL: must start with redis://, rediss:// or unix:// (got http://)" in err
    assert "Pa55word" not in err
    assert "cache.internal" not in err


def test_a_ledger_path_that_is_a_directory_is_refused_by_check(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configured.setenv("TOPUP_GUARD_STATE_PATH", str(tmp_path))
    code, err = problems(capsys, "check")
    assert code == 2
    assert f"TOPUP_GUARD_STATE_PATH: {tmp_path} is a directory" in err


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_an_empty_secret_file_is_a_missing_secret(
    configured: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    empty = tmp_path / "secret"
    empty.write_text(content)
    configured.delenv("VONAGE_API_SECRET")
    configured.setenv("VONAGE_API_SECRET_FILE", str(empty))
    code, err = problems(capsys, "check")
    assert code == 2
    assert f"VONAGE_API_SECRET_FILE: {empty} is empty" in err


@pytest.mark.parametrize("argv", [["config", "--json"], ["config"], ["--help"]])
def test_a_reader_that_stops_early_gets_no_traceback(argv: list[str], tmp_path: Path) -> None:
    # `topup-guard config --json | head -1`: the read end is closed before the command writes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "topup_guard", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    code = proc.wait(timeout=30)
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert code in (0, 141)


def test_every_variable_the_image_and_the_chart_set_is_one_topup_guard_reads() -> None:
    # A variable the chart sets but Settings lacks would now stop the guard at start (exit 2).
    import re

    from topup_guard.config import KNOWN_VARIABLES

    sources = [ROOT / "Dockerfile", *sorted((ROOT / "helm").rglob("*.yaml")),
               *sorted((ROOT / "helm").rglob("*.tpl"))]  # fmt: skip
    names = {
        name
        for path in sources
        for name in re.findall(r"\b(?:TOPUP_GUARD|VONAGE)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert names, "the scan found the variables"
    assert sorted(names - KNOWN_VARIABLES) == []
