"""The guard process, end to end, as an operator sees it: Slack messages and OTLP telemetry.

Slack is the incoming webhook (``run`` takes no Web API base URL from the environment, so the
bot-token path is covered in-process by test_no_secret_leaks). Both receivers listen on real
sockets in the test's loop; the guard is the real ``topup-guard run`` child process.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.otlp_receiver import Receiver
from tests.run.guardproc import GuardProcess, guard_env, until
from tests.run.slack_receiver import SlackReceiver
from tests.simctl import sim_post
from topup_guard.config import DEMO_API_SECRET, DEMO_TRX
from topup_guard.sim import RunningSimulator


def otel_env(collector: Receiver) -> dict[str, str]:
    return {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_SERVICE_NAME": "topup-guard-e2e",
    }


def attrs(span: Any) -> dict[str, Any]:
    """A protobuf span's (or data point's) attributes as a plain dict."""
    out: dict[str, Any] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def metric_points(collector: Receiver, name: str) -> list[Any]:
    points: list[Any] = []
    for request in collector.metrics:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        data = getattr(m, m.WhichOneof("data"))
                        points.extend(data.data_points)
    return points


async def test_a_top_up_reaches_slack_and_the_collector_with_its_trace_and_metrics(
    sim: RunningSimulator, slack: SlackReceiver, collector: Receiver, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/control", {"balance": "5", "spend_rate": "0.01"})
    env = guard_env(
        sim,
        tmp_path / "ledger.db",
        TOPUP_GUARD_SLACK_WEBHOOK_URL=slack.webhook_url,
        **otel_env(collector),
    )
    guard = await GuardProcess.start(env)
    try:
        await guard.event("topup_succeeded")
        await until(lambda: slack.find("Topped up"), timeout=5)
        await until(lambda: "topup" in collector.span_names(), timeout=5)
    finally:
        code, _ = await guard.terminate()
    assert code == 0, guard.output

    # --- Slack: started, the top-up with its numbers and reason, stopped -------------------
    texts = [p.said for p in slack.posts]
    assert texts[0].startswith("topup-guard started"), texts
    assert {p.scope for p in slack.posts} == {env["VONAGE_API_KEY"]}  # every one names the account
    (topped,) = slack.find("Topped up")
    assert topped.said.startswith("Topped up 50.00 EUR"), topped.text  # the amount,
    assert "balance 4.9" in topped.text  # the balance before ...
    assert "-&gt; 54.9" in topped.text  # ... and after the credit (Slack-escaped arrow),
    assert "Why: balance 4.9" in topped.text  # and the reason
    assert "below floor" in topped.text
    fields = str(topped.json["blocks"])
    for label in ("Amount", "Balance before", "Balance after"):
        assert label in fields
    assert texts[-1].startswith("topup-guard stopped"), texts

    # --- traces: poll_cycle > balance.read / decide / topup, Vonage HTTP calls inside ----------
    spans = collector.spans()
    by_id = {s.span_id: s for s in spans}
    cycles = [s for s in spans if s.name == "poll_cycle"]
    assert cycles
    cycle_ids = {s.span_id for s in cycles}
    for child in ("balance.read", "decide", "topup"):
        found = [s for s in spans if s.name == child]
        assert found, f"no {child} span in {sorted(set(collector.span_names()))}"
        assert all(s.parent_span_id in cycle_ids for s in found), child
    decides = [attrs(s) for s in spans if s.name == "decide"]
    assert {"top_up", "nothing"} <= {d["decision.action"] for d in decides}, decides
    assert all(d["decision.reason"] for d in decides)

    http = [s for s in spans if s.name.startswith("vonage ")]
    names = {s.name for s in http}
    assert {"vonage GET /account/get-balance", "vonage POST /account/top-up"} <= names
    (post,) = [s for s in http if s.name == "vonage POST /account/top-up"]
    assert by_id[post.parent_span_id].name == "topup"
    reads = [s for s in http if s.name == "vonage GET /account/get-balance"]
    assert any(by_id.get(s.parent_span_id) and by_id[s.parent_span_id].name == "balance.read"
               for s in reads)  # fmt: skip
    for span in http:
        a = attrs(span)
        assert a["http.request.method"] in ("GET", "POST")
        assert a["url.path"].startswith("/account/")
        assert "?" not in a["url.path"]
        assert a["server.address"] == "127.0.0.1"
        assert a["http.response.status_code"] == 200
        flat = repr(span)
        for secret in (DEMO_API_SECRET, DEMO_TRX, "Authorization", "Basic "):
            assert secret not in flat, (secret, span.name)

    # --- metrics: the balance gauge, the top-up and API-call counters ----------------------
    assert {"topup_guard.balance", "topup_guard.topups", "topup_guard.api_calls"} <= (
        collector.metric_names()
    )
    topups = metric_points(collector, "topup_guard.topups")
    assert any(attrs(p).get("outcome") == "succeeded" and p.as_int >= 1 for p in topups), topups
    calls = {attrs(p).get("endpoint") for p in metric_points(collector, "topup_guard.api_calls")}
    assert {"get-balance", "top-up"} <= calls
    balances = [p.as_double for p in metric_points(collector, "topup_guard.balance")]
    assert balances, "the balance gauge was exported"
    assert all(Decimal("4") < Decimal(str(b)) < Decimal("60") for b in balances), balances
    resource = {kv.key: kv.value.string_value for kv in collector.traces[0].resource_spans[0]
                .resource.attributes}  # fmt: skip
    assert resource["service.name"] == "topup-guard-e2e"
