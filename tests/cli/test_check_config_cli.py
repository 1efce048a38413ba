"""check, check --live and config: every way configuration goes wrong is one clear line, exit 2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.cli.helpers import Run, clean_env
from tests.simctl import sim_post
from topup_guard.cli import main
from topup_guard.cli.check import policy_findings
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, load_settings
from topup_guard.sim import RunningSimulator

# --- check against the account ------------------------------------------------------------


@pytest.mark.usefixtures("account_env")
async def test_check_passes_a_good_configuration(cli: Run) -> None:
    code, out, err = await cli("check")
    assert code == 0, out + err
    assert "auto_reload: on" in out
    assert "PROBLEM" not in out


async def test_check_fails_when_auto_reload_is_off(cli: Run, account_env: RunningSimulator) -> None:
    await sim_post(account_env, "/_sim/control", {"auto_reload": False})
    code, out, _ = await cli("check", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    problems = [c for c in data["checks"] if c["level"] == "problem"]
    assert [c["name"] for c in problems] == ["auto_reload"]


@pytest.mark.usefixtures("account_env")
async def test_check_fails_when_the_credentials_are_rejected(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VONAGE_API_SECRET", "Rejected9Secret")
    code, out, _ = await cli("check")
    assert code == 1
    assert "PROBLEM  balance: cannot read it: AuthenticationError" in out
    assert "Rejected9Secret" not in out


@pytest.mark.usefixtures("account_env")
async def test_check_fails_when_caps_forbid_every_top_up(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPUP_GUARD_MAX_TOPUPS_PER_HOUR", "0")
    code, out, _ = await cli("check")
    assert code == 1
    assert "TOPUP_GUARD_MAX_TOPUPS_PER_HOUR" in out


@pytest.mark.parametrize(
    ("env", "name", "level"),
    [
        ({"TOPUP_GUARD_MAX_DAILY_AMOUNT": "0"}, "caps", "problem"),
        (
            {"TOPUP_GUARD_TOPUP_AMOUNT": "50", "TOPUP_GUARD_MAX_DAILY_AMOUNT": "40"},
            "caps",
            "problem",
        ),
        ({"TOPUP_GUARD_STATE_PATH": "/dev/null/ledger.db"}, "ledger", "problem"),
        ({"TOPUP_GUARD_MIN_BALANCE": "0"}, "min_balance", "warning"),
        ({"TOPUP_GUARD_DRY_RUN": "true"}, "dry_run", "warning"),
        ({"TOPUP_GUARD_HORIZON": "30"}, "horizon", "warning"),
    ],
)
def test_policy_findings_flag_settings_that_do_not_make_sense(
    env: dict[str, str], name: str, level: str
) -> None:
    found = policy_findings(load_settings(env))
    assert (name, level) in [(f.name, f.level) for f in found]


def test_policy_findings_are_all_ok_for_the_defaults(tmp_path: Path) -> None:
    found = policy_findings(load_settings({"TOPUP_GUARD_STATE_PATH": str(tmp_path / "l.db")}))
    assert {f.level for f in found} == {"ok"}


# --- bad configuration: exit 2, the variable named, no traceback ---------------------------


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(DEMO_API_SECRET + "\n")
    return path


BAD_CONFIGS: dict[str, tuple[dict[str, str | None], str]] = {
    "missing key": ({"VONAGE_API_KEY": None}, "VONAGE_API_KEY"),
    "missing trx": ({"TOPUP_GUARD_TRX": None}, "TOPUP_GUARD_TRX"),
    "bad number": ({"TOPUP_GUARD_MIN_BALANCE": "ten euros"}, "TOPUP_GUARD_MIN_BALANCE"),
    "negative number": ({"TOPUP_GUARD_HTTP_TIMEOUT": "-1"}, "TOPUP_GUARD_HTTP_TIMEOUT"),
    "bad url": ({"TOPUP_GUARD_REST_URL": "ftp://rest.example"}, "TOPUP_GUARD_REST_URL"),
    "url with credentials": (
        {"TOPUP_GUARD_API_URL": "https://u:p@api.example"},
        "TOPUP_GUARD_API_URL",
    ),
    "unreadable file": (
        {"VONAGE_API_SECRET": None, "VONAGE_API_SECRET_FILE": "/no/such/secret"},
        "VONAGE_API_SECRET_FILE",
    ),
    "both value and file": ({"VONAGE_API_SECRET_FILE": "<secret_file>"}, "VONAGE_API_SECRET"),
}


@pytest.fixture
def good_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VONAGE_API_KEY", DEMO_API_KEY)
    monkeypatch.setenv("VONAGE_API_SECRET", DEMO_API_SECRET)
    monkeypatch.setenv("TOPUP_GUARD_TRX", DEMO_TRX)
    monkeypatch.setenv("TOPUP_GUARD_REST_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv("TOPUP_GUARD_API_URL", "http://127.0.0.1:9")
    return monkeypatch


# Which commands need which variable: ``config`` requires nothing, only check/top-up need trx.
_NEEDS = {"missing key": ("check", "balance", "top-up"), "missing trx": ("check", "top-up")}
BAD_CONFIG_RUNS = [
    (case, command)
    for case in BAD_CONFIGS
    for command in (["check"], ["balance"], ["config"], ["top-up", "--yes"])
    if command[0] in _NEEDS.get(case, (command[0],))
]


@pytest.mark.parametrize(("case", "command"), BAD_CONFIG_RUNS)
def test_bad_configuration_exits_2_naming_the_variable_without_a_traceback(
    good_env: pytest.MonkeyPatch,
    secret_file: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    command: list[str],
) -> None:
    changes, variable = BAD_CONFIGS[case]
    for name, value in changes.items():
        if value is None:
            good_env.delenv(name)
        else:
            good_env.setenv(name, str(secret_file) if value == "<secret_file>" else value)
    code = main(command)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert variable in captured.err
    assert all(line.startswith("topup-guard: ") for line in captured.err.splitlines())
    assert "Traceback" not in captured.err
    assert DEMO_API_SECRET not in captured.err


def test_every_problem_is_reported_at_once(
    good_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good_env.setenv("TOPUP_GUARD_MIN_BALANCE", "x")
    good_env.setenv("TOPUP_GUARD_POLL_INTERVAL", "y")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "TOPUP_GUARD_MIN_BALANCE" in err
    assert "TOPUP_GUARD_POLL_INTERVAL" in err


# --- config -------------------------------------------------------------------------------

SECRET_VALUES = {
    "VONAGE_API_SECRET": "Very5ecretValue",
    "TOPUP_GUARD_TRX": "trx0123456789abcdef",
    "TOPUP_GUARD_SLACK_TOKEN": "xoxb-secret-token-value",
    "TOPUP_GUARD_SLACK_CHANNEL": "#ops",
    "TOPUP_GUARD_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/hooksecret",
    "TOPUP_GUARD_REDIS_URL": "redis://:redispassword@redis:6379/0",
}


@pytest.mark.parametrize("json_output", [False, True])
def test_config_shows_every_setting_with_secrets_masked(
    good_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], json_output: bool
) -> None:
    for name, value in SECRET_VALUES.items():
        good_env.setenv(name, value)
    good_env.setenv("TOPUP_GUARD_MIN_BALANCE", "12.5")
    code = main(["config", "--json"] if json_output else ["config"])
    out = capsys.readouterr().out
    assert code == 0
    for name, value in SECRET_VALUES.items():
        if name != "TOPUP_GUARD_SLACK_CHANNEL":
            assert value not in out, name
    assert "hooksecret" not in out
    assert "redispassword" not in out
    if json_output:
        data = json.loads(out)
        assert data["VONAGE_API_SECRET"] == "****** (set)"
        assert data["TOPUP_GUARD_MIN_BALANCE"] == "12.5"
        assert data["VONAGE_API_KEY"] == DEMO_API_KEY
    else:
        assert "TOPUP_GUARD_MIN_BALANCE" in out
        assert "12.5" in out
        assert "TOPUP_GUARD_REDIS_URL" in out


# --- check --live -------------------------------------------------------------------------


@pytest.fixture
async def livez() -> AsyncIterator[tuple[str, list[int]]]:
    """A local /livez answering the status at the head of the list (200 unless told)."""
    status = [200]

    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status[0], text="ok" if status[0] == 200 else "stale")

    app = web.Application()
    app.router.add_get("/livez", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/livez", status
    finally:
        await runner.cleanup()


async def test_check_live_exits_0_on_200_and_1_otherwise(
    cli: Run, livez: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)  # a probe needs no credentials at all
    url, status = livez
    code, out, _ = await cli("check", "--live", "--url", url)
    assert code == 0
    assert out.startswith("live")
    status[0] = 503
    code, out, _ = await cli("check", "--live", "--url", url, "--json")
    assert code == 1
    assert json.loads(out) == {"live": False, "url": url}


async def test_check_live_defaults_to_the_health_port_on_localhost(
    cli: Run, livez: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)
    url, _ = livez
    monkeypatch.setenv("TOPUP_GUARD_HEALTH_PORT", url.rsplit(":", 1)[1].split("/")[0])
    code, out, _ = await cli("check", "--live")
    assert code == 0
    assert url in out


async def test_check_live_exits_1_when_nothing_listens(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)
    code, _, _ = await cli("check", "--live", "--url", "http://127.0.0.1:9/livez")
    assert code == 1


def test_check_live_with_a_bad_health_port_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env(monkeypatch)
    monkeypatch.setenv("TOPUP_GUARD_HEALTH_PORT", "eighty")
    assert main(["check", "--live"]) == 2
    assert "TOPUP_GUARD_HEALTH_PORT" in capsys.readouterr().err


def test_check_url_without_live_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--url", "http://127.0.0.1:9/livez"]) == 2
    assert "--live" in capsys.readouterr().err
