"""The simulator's aiohttp app: Vonage's rest and api hosts on one port, plus ``/_sim`` controls.

Around every Vonage route the middleware, in order: gives the request an ``X-Request-Id``, takes
the next injected fault for the endpoint, checks Basic auth (401 in the host's own error style),
runs the handler (which applies the change), and then lets an "after" fault spoil the answer. That
order is what makes "applied, then reset" and "refused, nothing applied" faithful.

``start_simulator`` runs it in the current event loop (tests, the demo); ``serve_forever`` is the
``topup-guard simulate`` command.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from topup_guard.clock import Clock, SystemClock
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX, env_name
from topup_guard.errors import ConfigError
from topup_guard.fleet.trace import read_fleet_trace
from topup_guard.sim import wire
from topup_guard.sim.account import SimAccount
from topup_guard.sim.context import CONTEXT, SimContext
from topup_guard.sim.control import add_control_routes
from topup_guard.sim.faults import BODY_KINDS, READING_KINDS, Fault
from topup_guard.sim.gameday import game_day_help
from topup_guard.sim.routes import (
    ENDPOINTS,
    REQUEST_ID,
    add_routes,
    basic_credentials,
    fault_names,
    request_id,
    vonage_handler_errors,
)
from topup_guard.sim.scenario import Scenario, default_scenario, load_scenario

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    account: SimAccount,
    *,
    speed: float = 1.0,
    clock: Clock | None = None,
    balance_latency_s: float = 0.0,
) -> web.Application:
    """The simulator app for ``account``; ``speed`` simulated seconds pass per real second."""
    if not speed > 0:
        raise ValueError("speed must be positive")
    clock = clock or SystemClock()
    ctx = SimContext(
        account=account,
        clock=clock,
        speed=speed,
        started=clock.now(),
        origin=account.now,
        balance_latency_s=balance_latency_s,
    )
    app = web.Application(middlewares=[_vonage_middleware])
    app[CONTEXT] = ctx
    add_routes(app)
    add_control_routes(app)

    async def _wake_sleepers(_: web.Application) -> None:
        ctx.stopping.set()

    app.on_shutdown.append(_wake_sleepers)
    return app


def _endpoint(request: web.Request) -> tuple[str, str] | None:
    resource = request.match_info.route.resource
    return ENDPOINTS.get(resource.canonical) if resource is not None else None


@web.middleware
async def _vonage_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    found = _endpoint(request)
    if found is None:  # /_sim controls and unknown paths
        return await handler(request)
    endpoint, family = found
    ctx = request.app[CONTEXT]
    request[REQUEST_ID] = str(uuid.uuid4())
    fault = ctx.faults.take(*fault_names(endpoint, request.method))
    response, outcome = await _answer(request, handler, ctx, family, fault)
    ctx.count(endpoint, outcome)
    response.headers["X-Request-Id"] = request_id(request)
    return response


async def _answer(
    request: web.Request, handler: Handler, ctx: SimContext, family: str, fault: Fault | None
) -> tuple[web.StreamResponse, str]:
    """The response and the outcome to count (a status, or ``reset`` / ``timeout``)."""
    rid = request_id(request)
    kind = fault.kind if fault is not None else None
    if fault is not None and kind == "slow":
        await ctx.sleep(fault.delay)
    elif fault is not None and fault.before:
        return _before_fault(request, fault, rid)
    response: web.StreamResponse
    if family != "sms" and not _authenticated(request, ctx.account):
        response = (
            wire.legacy("authentication-failed")
            if family == "rest"
            else wire.problem("unauthorized", rid, "You did not provide correct credentials.")
        )
    else:
        response = await vonage_handler_errors(request, handler)
    if fault is None or kind == "slow":
        return response, str(response.status)
    if kind == "error_500_after":
        return wire.problem("internal-error", rid, "Please try again later"), "500"
    if kind in READING_KINDS:  # valid JSON, but not the balance now
        return _reading_fault(ctx, fault), "200"
    if kind in BODY_KINDS:  # applied; the answer's body is garbage (or a postpaid debt)
        account = ctx.account
        return wire.garbage_body(kind, account.balance, account.auto_reload), "200"
    if kind == "malformed_json":
        body = response.body if isinstance(response, web.Response) else None
        raw = bytes(body) if isinstance(body, bytes | bytearray) else b""
        cut = raw[: max(1, len(raw) // 2)] if len(raw) > 1 else b'{"value": 1'
        return web.Response(body=cut, status=200, content_type="application/json"), "malformed"
    if kind == "timeout_after":
        await ctx.sleep(fault.delay)
        _abort(request)
        return response, "timeout"
    _abort(request)  # reset_after
    return response, "reset"


def _before_fault(request: web.Request, fault: Fault, rid: str) -> tuple[web.Response, str]:
    if fault.kind == "error_500_before":
        return wire.problem("internal-error", rid, "Please try again later"), "500"
    if fault.kind == "rate_limit":
        response = wire.problem("rate-limit", rid, "You have exceeded your request rate limit")
        response.headers["Retry-After"] = str(math.ceil(fault.retry_after))
        response.headers["X-RateLimit-Limit"] = "30"
        response.headers["X-RateLimit-Remaining"] = "0"
        return response, "429"
    if fault.kind == "html_error":
        return wire.html_error_page(), "502"
    if fault.kind == "redirect":
        return wire.redirect(), "302"
    _abort(request)  # reset_before
    return web.Response(status=500), "reset"


def _abort(request: web.Request) -> None:
    """Drop the connection without an answer: the client sees a reset / ServerDisconnected."""
    if request.transport is not None:
        request.transport.abort()


def _authenticated(request: web.Request, account: SimAccount) -> bool:
    creds = basic_credentials(request)
    return creds is not None and account.authenticate(*creds)


# --- running it -------------------------------------------------------------------------
@dataclass(frozen=True)
class SimCredentials:
    """What the simulated account accepts; ``repr`` shows only the key."""

    api_key: str
    api_secret: str
    trx: str

    def __repr__(self) -> str:
        return f"SimCredentials(api_key={self.api_key!r})"


def credentials_from_env(environ: Mapping[str, str] | None = None) -> SimCredentials:
    """The worker's own variables (or their ``_FILE`` variants); the documented demo values
    when unset, so the worker and the simulator agree without any configuration."""
    environ = os.environ if environ is None else environ

    def pick(field: str, default: str) -> str:
        name = env_name(field)
        if environ.get(name):
            return environ[name]
        path = environ.get(name + "_FILE")
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError([f"{name}_FILE: cannot read {path} ({exc.strerror})"]) from None
        return default

    return SimCredentials(
        pick("api_key", DEMO_API_KEY), pick("api_secret", DEMO_API_SECRET), pick("trx", DEMO_TRX)
    )


@dataclass
class RunningSimulator:
    """A started simulator. ``url`` serves both the rest and the api host paths."""

    url: str
    account: SimAccount
    app: web.Application
    runner: web.AppRunner

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_simulator(
    host: str = "127.0.0.1",
    port: int = 8089,
    *,
    scenario: Scenario | None = None,
    speed: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
    credentials: SimCredentials | None = None,
    clock: Clock | None = None,
    epoch: float | None = None,
    fleet_trace: Mapping[str, Sequence[tuple[float, Decimal]]] | None = None,
) -> RunningSimulator:
    """Serve a simulated account (the embedded bursty scenario by default) in this loop.

    ``port=0`` picks a free port; ``url`` reports the real one. ``credentials`` default to the
    environment, then the demo values. ``epoch`` (unix time of simulated t=0, default now) fixes
    the timestamps shown; ``fleet_trace`` adds trace demand per account (``read_fleet_trace``;
    default: the file the scenario's ``fleet_trace`` names, if any).
    """
    scenario = scenario or default_scenario()
    if fleet_trace is None and scenario.fleet_trace is not None:
        fleet_trace = read_fleet_trace(scenario.fleet_trace)
    creds = credentials or credentials_from_env()
    clock = clock or SystemClock()
    account = SimAccount.from_scenario(
        scenario,
        api_key=creds.api_key,
        api_secret=creds.api_secret,
        trx=creds.trx,
        epoch=_wall_epoch() if epoch is None else epoch,
        fleet_trace=fleet_trace,
    )
    app = build_app(account, speed=speed, clock=clock, balance_latency_s=scenario.balance_latency_s)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl_context is not None else "http"
    return RunningSimulator(f"{scheme}://{shown}:{bound}", account, app, runner)


def _wall_epoch() -> float:
    """Unix time of simulated t=0, for the timestamps Vonage shows (secrets, transfers)."""
    return time.time()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8089,
    scenario_path: str | None = None,
    speed: float = 1.0,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> int:
    """``topup-guard simulate``: serve until SIGINT/SIGTERM. Exit 0, or 2 on bad input."""
    try:
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError(["--tls-cert and --tls-key: give both or neither"])
        if not speed > 0:
            raise ConfigError(["--speed: must be positive"])
        scenario = load_scenario(scenario_path) if scenario_path else default_scenario()
        # Read here, so a bad file exits 2 naming its line rather than failing inside the loop.
        trace = read_fleet_trace(scenario.fleet_trace) if scenario.fleet_trace else None
        credentials = credentials_from_env()
        ssl_context = _server_tls(tls_cert, tls_key) if tls_cert and tls_key else None
    except ConfigError as exc:
        print(f"topup-guard simulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(host, port, scenario, speed, ssl_context, credentials, trace))
    except OSError as exc:
        print(
            f"topup-guard simulate: cannot listen on {host}:{port} ({exc.strerror})",
            file=sys.stderr,
        )
        return 2
    return 0


def banner(url: str, speed: float, credentials: SimCredentials) -> str:
    """What ``simulate`` prints at start: where, which credentials, how to point a guard at it
    and how to steer it. The demo credentials are shown in full (they are documented and work
    nowhere else); credentials taken from the environment are not."""
    demo = SimCredentials(DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX)
    key, secret, trx = (env_name(f) for f in ("api_key", "api_secret", "trx"))
    if credentials == demo:
        creds = (
            f"  demo credentials: {key}={DEMO_API_KEY} {secret}={DEMO_API_SECRET} {trx}={DEMO_TRX}"
        )
    else:
        creds = (
            f"  credentials from the environment: {key}={credentials.api_key} "
            f"(secret and trx not shown)"
        )
    rest, api = env_name("rest_url"), env_name("api_url")
    return (
        f"Vonage simulator on {url} (rest and api host) at speed {speed:g}\n{creds}\n"
        f"  point a guard at it: {rest}={url} {api}={url}\n" + game_day_help(url)
    )


def _server_tls(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"--tls-cert/--tls-key: cannot load ({exc})"]) from None
    return context


async def _serve(
    host: str,
    port: int,
    scenario: Scenario,
    speed: float,
    ssl_context: ssl.SSLContext | None,
    credentials: SimCredentials,
    fleet_trace: Mapping[str, Sequence[tuple[float, Decimal]]] | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = await start_simulator(
        host,
        port,
        scenario=scenario,
        speed=speed,
        ssl_context=ssl_context,
        credentials=credentials,
        fleet_trace=fleet_trace,
    )
    print(banner(sim.url, speed, credentials), flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def _reading_fault(ctx: SimContext, fault: Fault) -> web.Response:
    """``stale``: the answer given ``delay`` s earlier (a caching proxy); ``value_absurd`` and
    ``value_glitch``: a well-formed JSON number that is not the balance."""
    account = ctx.account
    flag = "true" if account.auto_reload else "false"
    if fault.kind == "stale":
        now = ctx.sim_time()
        old = [a for a in ctx.answers if a[0] <= now - fault.delay] or list(ctx.answers)[:1]
        value, reload_ = (old[-1][1], old[-1][2]) if old else (account.balance, account.auto_reload)
        body = f'{{"value": {wire.decimal_text(value)}, "autoReload": {str(reload_).lower()}}}'
    elif fault.kind == "value_absurd":
        body = f'{{"value": 1e16, "autoReload": {flag}}}'
    else:
        body = f'{{"value": {fault.value}, "autoReload": {flag}}}'
    return web.Response(text=body, status=200, content_type="application/json")
