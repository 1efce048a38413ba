"""The Vonage simulator: one account model, its HTTP server and the scenarios that drive it.

``SimAccount`` (pure, time-driven) is shared with the backtest; ``start_simulator`` serves it over
HTTP exactly as rest.nexmo.com and api.nexmo.com answer, with fault injection for tests.
"""

from topup_guard.sim.account import SimAccount
from topup_guard.sim.faults import Fault, FaultInjector
from topup_guard.sim.refusals import SimRefusal
from topup_guard.sim.scenario import Scenario, default_scenario, load_scenario
from topup_guard.sim.server import (
    RunningSimulator,
    SimCredentials,
    build_app,
    credentials_from_env,
    serve_forever,
    start_simulator,
)

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
