"""aiohttp imported by the CLI reads no CA bundle until a TLS handshake, and still verifies.

Each case runs in a fresh interpreter (aiohttp builds its contexts once, at its first import):
the CLI's parser is built, a local HTTPS server with a throwaway CA (trustme) is started, and a
default ``aiohttp.ClientSession`` (aiohttp's own verified context) calls it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from topup_guard.tlsdefer import DeferredCAContext, deferred_ca_loading

_CLIENT = """
import asyncio, gc, json, ssl, sys
from topup_guard.tlsdefer import import_aiohttp
import_aiohttp()  # as the client, the notifier and the CLI probes import it
import aiohttp
from aiohttp import web

def loaded_cas() -> int:
    return sum(c.cert_store_stats()["x509"] for c in gc.get_objects()
               if isinstance(c, ssl.SSLContext))

async def main() -> dict[str, object]:
    before = loaded_cas()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="hello"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/") as r:
            outcome = await r.text()
    except aiohttp.ClientConnectorCertificateError:
        outcome = "certificate rejected"
    finally:
        await runner.cleanup()
    return {"before": before, "outcome": outcome}

print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "k.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}


def call_https(pki: dict[str, str], **env: str) -> dict[str, object]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")} | env
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT, pki["cert"], pki["key"]],
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_no_ca_is_loaded_before_the_first_handshake_and_the_trust_store_applies_then(
    pki: dict[str, str],
) -> None:
    result = call_https(pki, SSL_CERT_FILE=pki["ca"])

    assert result == {"before": 0, "outcome": "hello"}


def test_a_server_the_trust_store_does_not_vouch_for_is_still_rejected(
    pki: dict[str, str],
) -> None:
    result = call_https(pki)  # the system CAs: they never signed the throwaway CA

    assert result == {"before": 0, "outcome": "certificate rejected"}


def test_a_deferred_context_keeps_the_verification_settings_and_loads_on_use() -> None:
    with deferred_ca_loading():
        context = ssl.create_default_context()
    assert type(context) is DeferredCAContext
    assert context.ca_loading_deferred
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.cert_store_stats()["x509"] == 0

    context.get_ca_certs()  # a use: the default paths are loaded now

    assert not context.ca_loading_deferred
    assert type(ssl.create_default_context()) is ssl.SSLContext  # nothing patched any more
