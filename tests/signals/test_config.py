"""The signal settings: loopback by default, a token before any other address, and the Guard
starting and stopping the server with the rest."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.redisproc import free_port
from tests.signals.conftest import TOKEN
from topup_guard.app import build_guard
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, is_loopback, load_settings
from topup_guard.errors import ConfigError
from topup_guard.signals.inbox import SignalInbox
from topup_guard.signals.server import SignalServer

CREDS = {"VONAGE_API_KEY": DEMO_API_KEY, "VONAGE_API_SECRET": DEMO_API_SECRET,
         "TOPUP_GUARD_TRX": DEMO_TRX}  # fmt: skip


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
     ("guard.example.com", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_defaults_listen_on_loopback_8081_without_a_token() -> None:
    settings = load_settings({})
    assert (settings.signal_host, settings.signal_port, settings.signal_token) == (
        "127.0.0.1", 8081, None)  # fmt: skip
    assert settings.poll_interval_with_signal is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_any_other_address_without_a_token_is_a_configuration_error(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"TOPUP_GUARD_SIGNAL_HOST": host})
    (problem,) = caught.value.problems
    assert problem.startswith("TOPUP_GUARD_SIGNAL_TOKEN: required when TOPUP_GUARD_SIGNAL_HOST")


def test_another_address_is_fine_with_a_token_or_with_the_port_off(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {"TOPUP_GUARD_SIGNAL_HOST": "0.0.0.0", "TOPUP_GUARD_SIGNAL_TOKEN_FILE": str(token_file)}
    settings = load_settings(env)
    assert settings.secret("signal_token") == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.masked())
    assert load_settings({"TOPUP_GUARD_SIGNAL_HOST": "0.0.0.0", "TOPUP_GUARD_SIGNAL_PORT": "0"})


@pytest.mark.parametrize("token", ["short", "has a space in it 0123", "tab\tinside-0123456789"])
def test_a_weak_or_unsendable_token_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"TOPUP_GUARD_SIGNAL_TOKEN": token})
    assert token not in str(caught.value)
    assert "TOPUP_GUARD_SIGNAL_TOKEN: must be at least 16" in str(caught.value)


def test_the_poll_interval_with_signal_must_not_undercut_poll_min() -> None:
    assert (
        load_settings({"TOPUP_GUARD_POLL_INTERVAL_WITH_SIGNAL": "600"}).poll_interval_with_signal
        == 600
    )
    with pytest.raises(ConfigError, match="TOPUP_GUARD_POLL_INTERVAL_WITH_SIGNAL"):
        load_settings({"TOPUP_GUARD_POLL_INTERVAL_WITH_SIGNAL": "1"})


def test_the_server_itself_refuses_a_non_loopback_address_without_a_token() -> None:
    with pytest.raises(ConfigError):
        SignalServer(SignalInbox(), host="0.0.0.0")


def test_run_exits_2_before_listening_when_the_address_is_open_without_a_token(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOPUP_GUARD_", "VONAGE_"))}
    env |= CREDS | {"TOPUP_GUARD_SIGNAL_HOST": "0.0.0.0", "TOPUP_GUARD_HEALTH_PORT": "0",
                    "TOPUP_GUARD_STATE_PATH": str(tmp_path / "l.db"),
                    "OTEL_SDK_DISABLED": "true"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "topup_guard", "run"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "TOPUP_GUARD_SIGNAL_TOKEN: required when TOPUP_GUARD_SIGNAL_HOST" in done.stderr
    assert "Traceback" not in done.stderr


# --- the Guard starts and stops it ----------------------------------------------------------------
def guard_settings(tmp_path: Path, port: int) -> dict[str, str]:
    return CREDS | {"TOPUP_GUARD_SIGNAL_PORT": str(port), "TOPUP_GUARD_HEALTH_PORT": "0",
                    "TOPUP_GUARD_STATE_PATH": str(tmp_path / "l.db")}  # fmt: skip


async def test_the_guard_starts_the_signal_server_with_itself_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    guard = build_guard(load_settings(guard_settings(tmp_path, port)))
    assert guard.signal is not None
    await guard.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/v1/signals/refusal", json={"code": "1070"}
            ) as answer,
        ):
            assert answer.status == 202
        assert "topup_guard_signals_received" in guard.telemetry.render_prometheus()
    finally:
        await guard.stop()
    assert guard.signal.inbox.drain().refusals == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_a_taken_signal_port_is_a_configuration_error_naming_the_variable(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        guard = build_guard(load_settings(guard_settings(tmp_path, port)))
        try:
            with pytest.raises(
                ConfigError, match=f"TOPUP_GUARD_SIGNAL_PORT: cannot listen on 127.0.0.1:{port}"
            ):
                await guard.start()
        finally:
            await guard.stop()


def test_port_0_turns_the_signal_server_off(tmp_path: Path) -> None:
    assert build_guard(load_settings(guard_settings(tmp_path, 0))).signal is None
