"""The simulator's game-day reference: what ``/_sim/control`` and ``/_sim/faults`` accept, in words.

Apart from the routes (``control.py``) so ``simulate --help`` and the banner print it without
loading aiohttp's server.
"""

from __future__ import annotations

import textwrap

from topup_guard.sim.faults import BEFORE_KINDS, ENDPOINTS, FAULT_KINDS


def game_day_help(url: str = "http://127.0.0.1:8089") -> str:
    """How to steer a running simulator (``simulate --help``, the banner and the README agree)."""
    kinds = textwrap.fill(", ".join(FAULT_KINDS), 88, initial_indent=" " * 11,
                          subsequent_indent=" " * 11)  # fmt: skip
    return f"""\
game day: steer the account at {url} while a guard runs against it (no auth on /_sim)
  GET  /_sim/state     balance, auto-reload, top-ups and auto-reloads applied (with times),
                       failed spend, exhausted seconds, calls by endpoint and status
  POST /_sim/control   a JSON object with any of (answers the new state):
         balance (EUR)              set the balance now
         spend_rate (EUR/s | null)  constant demand from now on; null restores the scenario
         auto_reload (true|false)   as in Vonage's dashboard (false: top-ups are refused)
         fail_payments (N)          the next N payments fail; 3 in a row turn auto-reload off
         topup_amount, autoreload_threshold (EUR)
         credit_delay_s (s)         top-up credits show this long after Vonage's "200"
         debit (EUR)                a one-off debit now (a number rental, a transfer out)
       curl -s -X POST {url}/_sim/control -d '{{"spend_rate": 0.5, "fail_payments": 3}}'
  POST /_sim/subaccounts/KEY  one subaccount: spend_rate (EUR/s | null), balance (EUR, own
                       balance only), suspended (true|false); answers its figures. The state's
                       "subaccounts" shows each one's balance and served and refused demand
  POST /_sim/faults    one fault or a list; the next COUNT calls of ENDPOINT fail as KIND:
         {{"endpoint": ENDPOINT, "kind": KIND, "count": 1, "retry_after": 1, "delay": 30,
          "value": "1E+2"}}  (stale: the answer given DELAY s earlier; value_glitch: VALUE)
         ENDPOINT: * or {", ".join(ENDPOINTS)}
         KIND (not applied: {", ".join(k for k in FAULT_KINDS if k in BEFORE_KINDS - {"slow"})};
         slow answers late; the others apply the change, then lose or spoil the answer):
{kinds}
       curl -s -X POST {url}/_sim/faults -d '{{"endpoint": "top-up", "kind": "timeout_after"}}'
  GET  /_sim/faults    the faults still pending; DELETE /_sim/faults clears them
"""
