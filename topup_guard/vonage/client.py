"""The Vonage Account API client: the only code in topup-guard that speaks HTTP to Vonage.

Design (after encode/httpx): the ``aiohttp.ClientSession`` can be injected, so tests and the
simulator need no patching; every failure leaves as one exception of ``topup_guard.errors`` and
nothing above this package ever sees an aiohttp exception. The client never retries and never
follows a redirect: the top-up POST is not idempotent, and whether to try again is the retry
module's decision, made from the exception class (``RequestNotSentError`` is the only transport
failure after which resending is provably safe).

Layers: :mod:`.payloads` builds request bodies, :mod:`.transport` does the one HTTP exchange,
:mod:`.errormap` decides whether the answer is an error, :mod:`.parsing` turns a success into
model values, :mod:`.spans` wraps each call in an OpenTelemetry client span (method, path, host
and status only). Only this module and :mod:`.transport` import aiohttp, and only at the first
call that needs it: with ``keepalive_reads`` a guard that only polls never loads it (~14 MB).

Credentials travel only in the ``Authorization: Basic`` header — never in a URL, a body, a log
line, an exception message or ``repr``.
"""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar
from urllib.parse import quote, urlencode

from opentelemetry import trace
from opentelemetry.trace import Tracer
from yarl import URL

from topup_guard import __version__
from topup_guard.errors import InvalidSecretError
from topup_guard.model import (
    AccountSettings,
    Balance,
    Secret,
    Subaccount,
    SubaccountsOverview,
    Transfer,
)
from topup_guard.vonage import errormap, parsing, payloads, spans
from topup_guard.vonage.keepalive import KeepAliveGet
from topup_guard.vonage.parsing import Exchange, Response

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)
T = TypeVar("T")
_URL_CACHE_SIZE = 64


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, for telemetry. Holds no credential, query string or body.

    ``endpoint`` is a stable name (``get-balance``, ``top-up``, ``settings``, ``secrets``,
    ``subaccounts``, ``balance-transfers``); ``outcome`` is ``ok`` or the exception class name.
    """

    endpoint: str
    method: str
    status: int | None
    outcome: str
    duration_s: float
    request_id: str | None = None


Observer = Callable[[CallRecord], None]


class _Hidden:
    """A string that never shows up in ``repr``/``vars()`` dumps (debuggers, error reporters)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"


def _base_url(value: str, name: str) -> str:
    """A base URL without credentials, query or fragment, so none can leak through it."""
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{name} must be an http(s) URL")
    if url.user or url.password or url.query_string or url.fragment:
        raise ValueError(f"{name} must not carry credentials, a query or a fragment")
    return str(url).rstrip("/")


def _seg(value: str, name: str) -> str:
    """One path segment, percent-encoded so an id can never change the path."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


class VonageClient:
    """Async client for the Vonage Account, Secrets and Subaccounts APIs.

    Use as ``async with VonageClient(key, secret) as vonage: balance = await vonage.get_balance()``.
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        rest_url: str = "https://rest.nexmo.com",
        api_url: str = "https://api.nexmo.com",
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        observer: Observer | None = None,
        tracer: Tracer | None = None,
        keepalive_reads: bool = False,
    ) -> None:
        """``keepalive_reads``: plain GETs (the poll's balance read, the fleet's list call) go
        over :mod:`.keepalive` instead of aiohttp (``topup-guard run`` turns it on); every other
        call, and every call when a session is injected, goes through aiohttp."""
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret are required")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._api_key = api_key
        self._secret = _Hidden(api_secret)
        self._auth = _Hidden(payloads.basic_authorization(api_key, api_secret))
        self._rest_url = _base_url(rest_url, "rest_url")
        self._api_url = _base_url(api_url, "api_url")
        self._timeout_s = timeout
        self._timeout: aiohttp.ClientTimeout | None = None  # made with the session
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._urls: dict[str, URL] = {}
        self._keepalive = keepalive_reads and session is None
        self._readers: dict[str, KeepAliveGet] = {}
        self._observer = observer
        # The global tracer by default, so a Telemetry set up later still receives the spans.
        self._tracer = tracer or trace.get_tracer("topup_guard")

    @property
    def api_key(self) -> str:
        return self._api_key

    def __repr__(self) -> str:
        return (
            f"VonageClient(api_key={self._api_key!r}, rest_url={self._rest_url!r}, "
            f"api_url={self._api_url!r})"
        )

    async def __aenter__(self) -> Self:
        if self._closed:
            raise RuntimeError("VonageClient is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it; an injected one belongs to the caller."""
        self._closed = True
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            await reader.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("VonageClient is closed")
        if self._session is None:
            # Created lazily, inside the running loop; no cookies carried between calls.
            aiohttp = _aiohttp()
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def warm(self) -> None:
        """Load aiohttp and make the session now, ahead of a call that will need them (the
        engine calls it once a top-up comes within its horizon)."""
        if not self._closed:
            self._get_session()
            self._client_timeout()
            from topup_guard.vonage import transport  # noqa: F401

    def _client_timeout(self) -> aiohttp.ClientTimeout:
        if self._timeout is None:
            t = self._timeout_s
            self._timeout = _aiohttp().ClientTimeout(total=t, sock_connect=min(t, 5.0))
        return self._timeout

    # --- Account (rest host) --------------------------------------------------------------

    async def get_balance(self) -> Balance:
        """``GET /account/get-balance``: EUR as Decimal; refuses anything but a numeric value."""
        return await self._call(
            "get-balance", "GET", self._rest_url, "/account/get-balance", parsing.parse_balance
        )

    async def top_up(self, trx: str) -> None:
        """``POST /account/top-up``. Returns only on HTTP 200 with ``error-code`` "200".

        Not idempotent and never retried here. ``OutcomeUnknownError``, ``ServerError`` and
        ``MalformedResponseError`` all mean the charge may have happened: verify by balance.
        """
        if not trx:
            raise ValueError("trx must not be empty")
        await self._call(
            errormap.TOP_UP,
            "POST",
            self._rest_url,
            "/account/top-up",
            parsing.parse_top_up,
            form={"trx": trx},
            redact=(trx,),
        )

    async def get_settings(self) -> AccountSettings:
        """The current settings (an empty form changes nothing), e.g. ``max_calls_per_second``."""
        return await self.update_settings()

    async def update_settings(
        self,
        *,
        mo_callback_url: str | None = None,
        dr_callback_url: str | None = None,
        http_forward_method: str | None = None,
    ) -> AccountSettings:
        """``POST /account/settings``; ``""`` clears a URL, ``None`` leaves it alone."""
        fields = payloads.settings_form(mo_callback_url, dr_callback_url, http_forward_method)
        return await self._call(
            "settings",
            "POST",
            self._rest_url,
            "/account/settings",
            parsing.parse_settings,
            form=fields,
        )

    # --- Secrets (api host) ---------------------------------------------------------------

    def _secrets_path(self, api_key: str | None, secret_id: str | None = None) -> str:
        path = f"/accounts/{_seg(api_key or self._api_key, 'api_key')}/secrets"
        return path if secret_id is None else f"{path}/{_seg(secret_id, 'secret_id')}"

    async def list_secrets(self, api_key: str | None = None) -> list[Secret]:
        path = self._secrets_path(api_key)
        return await self._call("secrets", "GET", self._api_url, path, parsing.parse_secrets)

    async def get_secret(self, secret_id: str, api_key: str | None = None) -> Secret:
        path = self._secrets_path(api_key, secret_id)
        return await self._call("secrets", "GET", self._api_url, path, parsing.parse_secret)

    async def create_secret(self, secret: str, api_key: str | None = None) -> Secret:
        """Checks Vonage's complexity rules first: ``InvalidSecretError`` (never echoing it)."""
        if not payloads.secret_is_valid(secret):
            raise InvalidSecretError(payloads.COMPLEXITY_RULES)
        path = self._secrets_path(api_key)
        return await self._call(
            "secrets",
            "POST",
            self._api_url,
            path,
            parsing.parse_secret,
            json_body=payloads.secret_json(secret),
            success=(200, 201),
            redact=(secret,),
        )

    async def revoke_secret(self, secret_id: str, api_key: str | None = None) -> None:
        path = self._secrets_path(api_key, secret_id)
        await self._call(
            "secrets", "DELETE", self._api_url, path, lambda _d, _c: None, success=(200, 204)
        )

    # --- Subaccounts and transfers (api host) ---------------------------------------------

    def _accounts_path(self, suffix: str) -> str:
        return f"/accounts/{_seg(self._api_key, 'api_key')}/{suffix}"

    async def list_subaccounts(self) -> SubaccountsOverview:
        path = self._accounts_path("subaccounts")
        return await self._call(
            "subaccounts", "GET", self._api_url, path, parsing.parse_subaccounts
        )

    async def get_subaccount(self, subaccount_key: str) -> Subaccount:
        path = self._accounts_path(f"subaccounts/{_seg(subaccount_key, 'subaccount_key')}")
        return await self._call("subaccounts", "GET", self._api_url, path, parsing.parse_subaccount)

    async def transfer_balance(
        self, from_key: str, to_key: str, amount: Decimal, reference: str | None = None
    ) -> Transfer:
        """``POST .../balance-transfers``. ``amount`` is sent as an exact JSON number."""
        body = payloads.transfer_json(from_key, to_key, amount, reference)
        return await self._call(
            "balance-transfers",
            "POST",
            self._api_url,
            self._accounts_path("balance-transfers"),
            parsing.parse_transfer,
            json_body=body,
            success=(200, 201),
        )

    async def list_balance_transfers(
        self, start_date: str, end_date: str | None = None, subaccount: str | None = None
    ) -> list[Transfer]:
        """Transfers since ``start_date`` (ISO-8601, required by the API)."""
        if not start_date:
            raise ValueError("start_date is required")
        query = {"start_date": start_date, "end_date": end_date, "subaccount": subaccount}
        return await self._call(
            "balance-transfers",
            "GET",
            self._api_url,
            self._accounts_path("balance-transfers"),
            parsing.parse_transfers,
            params={k: v for k, v in query.items() if v is not None},
        )

    # --- The one request path ---------------------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        method: str,
        base: str,
        path: str,
        parse: Callable[[object, Exchange], T],
        *,
        form: Mapping[str, str] | None = None,
        json_body: str | None = None,
        params: Mapping[str, str] | None = None,
        success: Collection[int] = (200,),
        redact: Sequence[str] = (),
    ) -> T:
        """Send, map the answer onto the exception tree, parse; report once to the observer.

        Each call is one client span (``spans.client_span``): method, path and host only.
        """
        started = time.perf_counter()
        status: int | None = None
        request_id: str | None = None
        outcome = "ok"
        with spans.client_span(self._tracer, method, base, path) as span:
            try:
                resp = await self._send(method, base, path, form, json_body, params)
                status, request_id = resp.status, resp.request_id
                spans.set_status_code(span, status)
                ctx = Exchange(method, path, status, request_id)
                doc = errormap.check(
                    resp,
                    ctx,
                    endpoint=endpoint,
                    success=success,
                    redact=(self._secret.value, *redact),
                    now=time.time(),
                )
                return parse(doc, ctx)
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                record = CallRecord(
                    endpoint, method, status, outcome, time.perf_counter() - started, request_id
                )
                self._report(record)

    async def _send(
        self,
        method: str,
        base: str,
        path: str,
        form: Mapping[str, str] | None,
        json_body: str | None,
        params: Mapping[str, str] | None,
    ) -> Response:
        if (
            self._keepalive
            and method == "GET"
            and params is None
            and form is None
            and json_body is None
        ):
            return await self._reader(base).get(path, Exchange(method, path))
        headers = {"Authorization": self._auth.value, "Accept": "application/json"}
        data: bytes | None = None
        if form is not None:
            data = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif json_body is not None:
            data = json_body.encode()
            headers["Content-Type"] = "application/json"
        url = self._urls.get(base + path)
        if url is None:  # a handful of distinct URLs: parse each once, not every poll
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[base + path] = URL(base + path, encoded=True)
        session = self._get_session()
        from topup_guard.vonage import transport  # aiohttp's half: loaded with the session

        return await transport.send(
            session,
            url,
            Exchange(method, path),
            headers=headers,
            data=data,
            params=params,
            client_timeout=self._client_timeout(),
        )

    def _reader(self, base: str) -> KeepAliveGet:
        if self._closed:
            raise RuntimeError("VonageClient is closed")
        reader = self._readers.get(base)
        if reader is None:
            timeout = self._timeout_s
            headers = {"Authorization": self._auth.value, "Accept": "application/json",
                       "User-Agent": f"topup-guard/{__version__}"}  # fmt: skip
            reader = self._readers[base] = KeepAliveGet(base, headers, timeout=timeout)
        return reader

    def _report(self, record: CallRecord) -> None:
        log.debug(
            "vonage %s %s -> %s %s in %.3fs (X-Request-Id %s)",
            record.method,
            record.endpoint,
            record.status,
            record.outcome,
            record.duration_s,
            record.request_id,
        )
        if self._observer is None:
            return
        try:
            self._observer(record)
        except Exception:
            # Telemetry must never turn a completed call (a top-up!) into a failure.
            log.exception("vonage call observer failed")


def _aiohttp() -> types.ModuleType:
    """aiohttp, imported at its first use with its SSL contexts deferring CA loading."""
    from topup_guard.tlsdefer import import_aiohttp

    import_aiohttp()
    import aiohttp

    return aiohttp


__all__ = ["CallRecord", "Observer", "VonageClient"]
