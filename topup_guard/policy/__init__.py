"""The pure policy: spend forecast and the top-up decision. No I/O, no clock; time is an argument.

The engine, the backtest and the demo all call exactly this code.
"""

from topup_guard.policy.decide import (
    Action,
    Decision,
    GuardState,
    PolicyParams,
    decide,
    lead_time,
    next_poll,
)
from topup_guard.policy.forecast import Credit, Forecast, SpendTracker, forecast, time_to_level

__all__ = [
    "Action",
    "Credit",
    "Decision",
    "Forecast",
    "GuardState",
    "PolicyParams",
    "SpendTracker",
    "decide",
    "forecast",
    "lead_time",
    "next_poll",
    "time_to_level",
]
