"""Fleet mode end to end, as an operator sees it: every signal names the account.

The real ``topup-guard run`` child in fleet mode against the simulator over HTTP (a primary, two
own-balance subaccounts that spend, one excluded by the fleet file, one sharing the primary's
balance), with a local Slack, a local OTLP collector and the guard's own ``/metrics`` and
``/status``. A subaccount below its floor is funded by transfer; then: the Prometheus exposition
carries ``account`` for exactly the fleet's keys, the transfer span carries ``transfer.account``
and no secret, the fleet cycle span ``fleet.accounts``, every log line about a transfer names its
account, Slack gets no message per applied transfer, and ``ledger`` / ``explain`` show it.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env
from tests.otlp_receiver import Receiver
from tests.run.guardproc import GuardProcess, free_port, get, guard_env, until
from tests.run.slack_receiver import SlackReceiver
from tests.run.test_observability_e2e import attrs, otel_env
from tests.simctl import inject_fault, sim_post
from tests.telemetry.test_metric_series import label_values, samples
from topup_guard.cli import main
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator

LOW, STEADY, EXCLUDED, SHARED = "sub00001", "sub00002", "sub00003", "shared01"
SUB_SECRET = "SubSecret1"  # the simulator's subaccount secret: must never leave the process
FLEET_FILE = f"""
[defaults]
floor = 5
transfer_amount = 10

[[account]]
key = "{EXCLUDED}"
exclude = true
"""


async def test_a_fleet_run_names_the_account_in_metrics_spans_logs_slack_and_the_ledger(
    sim: RunningSimulator,
    slack: SlackReceiver,
    collector: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, balance in ((LOW, "6"), (STEADY, "40"), (EXCLUDED, "30")):
        sim.account.add_subaccount(key, name=f"Customer {key[-1]}", balance=Decimal(balance))
    sim.account.add_subaccount(SHARED, name="Shared")
    for key, rate in ((LOW, "0.2"), (STEADY, "0.01")):
        await sim_post(sim, f"/_sim/subaccounts/{key}", {"spend_rate": rate})
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET_FILE)
    port = free_port()
    state = tmp_path / "ledger.db"
    env = guard_env(sim, state, health_port=port, TOPUP_GUARD_FLEET_FILE=str(fleet),
                    TOPUP_GUARD_SLACK_WEBHOOK_URL=slack.webhook_url,
                    TOPUP_GUARD_NOTIFY_GROUP_WAIT="0", **otel_env(collector))  # fmt: skip
    guard = await GuardProcess.start(env)
    try:
        await guard.event("transfer_succeeded", timeout=30)
        await until(lambda: "transfer" in collector.span_names(), timeout=10)
        _, metrics = await get(f"http://127.0.0.1:{port}/metrics")
        status_url = f"http://127.0.0.1:{port}/status"
        _, status = await get(status_url)
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["explain", "--url", status_url]) == 0
        explained = capsys.readouterr().out
    finally:
        code, _ = await guard.terminate()
    assert code == 0, guard.output

    # --- /metrics: the account label takes exactly the fleet's keys ------------------------
    fleet_keys = {DEMO_API_KEY, LOW, STEADY}
    assert label_values(metrics, "topup_guard_account_balance_eur", "account") == fleet_keys
    got = samples(metrics)
    assert got[f'topup_guard_transfers_total{{account="{LOW}",state="succeeded"}}'] >= 1
    assert got[f'topup_guard_transfers_total{{account="{STEADY}",state="succeeded"}}'] == 0
    assert got[f'topup_guard_transferred_eur_total{{account="{LOW}"}}'] >= 10
    assert got["topup_guard_fleet_list_calls_total"] >= 2
    for series in (EXCLUDED, SHARED):
        assert f'account="{series}"' not in metrics, "skipped accounts are not series"

    # --- spans: the transfer names its account, the cycle counts its accounts --------------
    spans = collector.spans()
    transfers = [attrs(s) for s in spans if s.name == "transfer"]
    assert transfers
    assert {t["transfer.account"] for t in transfers} == {LOW}
    assert {t["transfer.outcome"] for t in transfers} == {"applied"}
    cycles = [attrs(s) for s in spans if s.name == "fleet_cycle"]
    assert cycles
    assert {c["fleet.accounts"] for c in cycles} == {2}, "LOW and STEADY; not excluded or shared"
    sent = b"".join(collector.bodies)
    for secret in (DEMO_API_SECRET, DEMO_TRX, SUB_SECRET, "Basic "):
        assert secret.encode() not in sent, secret

    # --- logs: every line about a transfer names its account -------------------------------
    records = guard.records()
    about_transfers = [r for r in records if str(r.get("event", "")).startswith("transfer")]
    assert about_transfers
    assert all(r.get("account") for r in about_transfers), about_transfers
    (first, *_) = [r for r in records if r["event"] == "transfer_succeeded"]
    assert (first["account"], first["account_name"]) == (LOW, "Customer 1")
    assert first["reference"].startswith("tg-")
    for secret in (DEMO_API_SECRET, DEMO_TRX, SUB_SECRET):
        assert secret not in guard.output

    # --- Slack: applied transfers are counted, not messaged one by one ---------------------
    said = [p.said for p in slack.posts]
    assert said[0].startswith("topup-guard started"), said
    assert not [s for s in said if s.startswith("Transfer to")], said

    # --- /status and explain: every account, soonest-empty first ---------------------------
    view = json.loads(status)["fleet"]
    assert {row["account"] for row in view["accounts"]} == {LOW, STEADY}
    assert {row["account"] for row in view["skipped"]} == {EXCLUDED, SHARED}
    assert "Fleet: 2 subaccount(s) guarded, 2 skipped" in explained
    assert f"Customer 1 ({LOW})" in explained
    assert f"skipped {EXCLUDED}: excluded by the fleet file" in explained

    # --- the ledger: the transfers Vonage applied, each under its subaccount ---------------
    clean_env(monkeypatch)
    monkeypatch.setenv("TOPUP_GUARD_STATE_PATH", str(state))
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["ledger", "--json", "--account", LOW]) == 0
    ledger = json.loads(capsys.readouterr().out)
    applied = [t for t in ledger["transfers"] if t["state"] == "succeeded"]
    vonage = [t for t in sim.account.transfers if t.to_key == LOW]
    assert len(applied) == len(vonage) >= 1, (ledger, vonage)
    assert {t["reference"] for t in applied} == {t.reference for t in vonage}


async def test_a_primary_that_cannot_cover_the_fleet_says_on_slack_who_runs_dry_when(
    sim: RunningSimulator, slack: SlackReceiver, tmp_path: Path
) -> None:
    for key, balance, rate in ((LOW, "6", "0.2"), (STEADY, "7", "0.05")):
        sim.account.add_subaccount(key, name=f"Customer {key[-1]}", balance=Decimal(balance))
        await sim_post(sim, f"/_sim/subaccounts/{key}", {"spend_rate": rate})
    # EUR 4 above the primary's floor (10) buys no transfer of 10, and its top-ups fail.
    await sim_post(sim, "/_sim/control", {"balance": "14"})
    await inject_fault(sim, endpoint="top-up", kind="error_500_before", count=100)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET_FILE)
    env = guard_env(sim, tmp_path / "ledger.db", TOPUP_GUARD_FLEET_FILE=str(fleet),
                    TOPUP_GUARD_SLACK_WEBHOOK_URL=slack.webhook_url,
                    TOPUP_GUARD_NOTIFY_GROUP_WAIT="0")  # fmt: skip
    guard = await GuardProcess.start(env)
    try:
        await until(lambda: slack.find("The primary account cannot cover the fleet"), timeout=20)
    finally:
        code, _ = await guard.terminate()
    assert code == 0, guard.output
    (post, *_) = slack.find("The primary account cannot cover the fleet")
    ranked = post.said.split("run dry first: ", 1)[1]
    assert ranked.index(f"Customer 1 ({LOW})") < ranked.index(f"Customer 2 ({STEADY})")
    assert " in " in ranked
    assert sim.account.transfers == [], "nothing was moved that the primary could not give"
