"""The Vonage simulator: one account model, its HTTP server and the scenarios that drive it.

``SimAccount`` (pure, time-driven) is shared with the backtest; ``start_simulator`` serves it over
HTTP exactly as rest.nexmo.com and api.nexmo.com answer, with fault injection for tests.
"""

from typing import TYPE_CHECKING, Any

from topup_guard.sim.account import SimAccount
from topup_guard.sim.faults import Fault, FaultInjector
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.scenario import Scenario, default_scenario, load_scenario

if TYPE_CHECKING:
    from topup_guard.sim.server import (
        RunningSimulator,
        SimCredentials,
        build_app,
        credentials_from_env,
        serve_forever,
        start_simulator,
    )

_SERVER = {
    "RunningSimulator", "SimCredentials", "build_app", "credentials_from_env", "serve_forever",
    "start_simulator",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    # The HTTP server (aiohttp.web) loads only when asked for: the backtest, the CLI's help text
    # and the guard import pieces of this package without serving anything.
    if name in _SERVER:
        from topup_guard.sim import server

        return getattr(server, name)
    raise AttributeError(name)


__all__ = [
    "Fault",
    "FaultInjector",
    "RunningSimulator",
    "Scenario",
    "SimAccount",
    "SimCredentials",
    "SimRefusal",
    "build_app",
    "credentials_from_env",
    "default_scenario",
    "load_scenario",
    "serve_forever",
    "start_simulator",
]
