"""The official Vonage Python SDK v4, pointed at the simulator, gets what it gets from Vonage.

The SDK always speaks HTTPS, so the simulator serves TLS with a throwaway CA (trustme) that
``REQUESTS_CA_BUNDLE`` makes the SDK trust. The SDK is synchronous (requests), so the simulator
runs in its own event loop on a background thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trustme
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import AuthenticationError, ForbiddenError
from vonage_sms import SmsError, SmsMessage

from tests.conftest import DEMO_CREDENTIALS, QUIET_SCENARIO
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.signals.parse import parse_sms
from topup_guard.sim import RunningSimulator, start_simulator


@pytest.fixture
def tls_sim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningSimulator]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))

    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[RunningSimulator] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            sim = loop.run_until_complete(
                start_simulator(
                    port=0,
                    scenario=QUIET_SCENARIO,
                    credentials=DEMO_CREDENTIALS,
                    ssl_context=server_context,
                )
            )
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(sim)
        loop.run_forever()
        loop.run_until_complete(sim.stop())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield started.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def client(sim: RunningSimulator, secret: str = DEMO_API_SECRET) -> Vonage:
    host = f"127.0.0.1:{sim.port}"
    return Vonage(
        Auth(api_key=DEMO_API_KEY, api_secret=secret),
        HttpClientOptions(rest_host=host, api_host=host, timeout=5),
    )


def test_sdk_reads_the_balance(tls_sim: RunningSimulator) -> None:
    assert tls_sim.url.startswith("https://")
    balance = client(tls_sim).account.get_balance()
    assert balance.value == 100.0
    assert balance.auto_reload is True


def test_sdk_tops_up(tls_sim: RunningSimulator) -> None:
    response = client(tls_sim).account.top_up(DEMO_TRX)
    assert (response.error_code, response.error_code_label) == ("200", "success")
    assert tls_sim.account.balance == Decimal("150")


def test_sdk_sees_a_refused_top_up_as_an_authentication_error(tls_sim: RunningSimulator) -> None:
    with pytest.raises(AuthenticationError, match="not auto-reload enabled"):
        client(tls_sim).account.top_up("wrong-trx")
    assert tls_sim.account.topups == []


def test_sdk_updates_the_default_sms_webhooks(tls_sim: RunningSimulator) -> None:
    settings = client(tls_sim).account.update_default_sms_webhook(
        mo_callback_url="https://example.com/mo", dr_callback_url="https://example.com/dr"
    )
    assert settings.mo_callback_url == "https://example.com/mo"
    assert settings.dr_callback_url == "https://example.com/dr"
    assert settings.max_calls_per_second == 30


def test_sdk_manages_secrets(tls_sim: RunningSimulator) -> None:
    account = client(tls_sim).account
    (original,) = account.list_secrets()
    created = account.create_secret("Rotated123")
    assert {s.id for s in account.list_secrets()} == {original.id, created.id}
    with pytest.raises(ForbiddenError, match="add-excess-secret"):
        account.create_secret("OneTooMany9")
    account.revoke_secret(original.id)
    assert [s.id for s in client(tls_sim, "Rotated123").account.list_secrets()] == [created.id]
    with pytest.raises(AuthenticationError):
        account.get_balance()  # the revoked secret no longer works


def test_sdk_form_posts_still_work_after_a_json_call(tls_sim: RunningSimulator) -> None:
    # The SDK keeps "Content-Type: application/json" after create_secret and then sends the
    # top-up form under it; the simulator reads the body, as the SDK's users rely on.
    account = client(tls_sim).account
    account.create_secret("Rotated123")
    assert account.top_up(DEMO_TRX).error_code == "200"


# --- the SMS API, and the raw answer the README tells senders to forward -----------------------
def test_sdk_sends_an_sms_and_reads_the_remaining_balance(tls_sim: RunningSimulator) -> None:
    sdk = client(tls_sim)
    response = sdk.sms.send(SmsMessage(to="447700900000", from_="AcmeInc", text="Hello"))
    assert response.message_count == "1"
    assert response.messages[0].remaining_balance == "99.99250000"
    assert response.messages[0].message_price == "0.00750000"
    raw = sdk.http_client.last_response
    assert raw is not None
    assert parse_sms(raw.content).readings == ((None, Decimal("99.9925")),)


def test_sdk_raises_on_status_9_and_its_last_response_is_the_refusal_to_forward(
    tls_sim: RunningSimulator,
) -> None:
    tls_sim.account.set_balance(Decimal("0.001"), tls_sim.account.now)
    sdk = client(tls_sim)
    with pytest.raises(SmsError, match="error code 9: Quota Exceeded - rejected"):
        sdk.sms.send(SmsMessage(to="447700900000", from_="AcmeInc", text="Hello"))
    raw = sdk.http_client.last_response
    assert raw is not None
    assert parse_sms(raw.content).refusals == 1
