"""``explain`` reads the fleet part of ``/status``: soonest-empty first, skipped, shortfall."""

from __future__ import annotations

from typing import Any

from topup_guard.cli.explain import fleet_text, status_text


def fleet_view() -> dict[str, Any]:
    """Shaped as ``FleetGuard.view()`` serialises it (money as strings, no spend: null)."""

    def row(key: str, name: str | None, eur: str, tte: float | None, **kw: Any) -> dict[str, Any]:
        return {"account": key, "name": name, "spendable_eur": eur, "floor_eur": "5",
                "rate_eur_per_s": None if tte is None else 0.01, "seconds_to_empty": tte,
                "decision": f"decided for {key}", "last_action": kw.get("last"),
                "suspended": kw.get("suspended", False)}  # fmt: skip

    return {
        "accounts": [
            row("idle0001", "Idle", "50.0", None),
            row("late0001", "Late", "40.0", 4000.0),
            row("soon0001", None, "2.0", 200.0, last="transfer #4 of 10.00 EUR: succeeded"),
            row("susp0001", "Stuck", "9.0", 900.0, suspended=True),
        ],
        "skipped": [{"account": "shared01", "why": "shares the primary account's balance"}],
        "list_calls": 12,
        "primary_reserve_eur": "30.00",
        "shortfall": [{"account": "late0001", "name": "Late", "seconds_to_empty": 4000.0}],
        "rules": {"file": "/etc/topup-guard/fleet.toml", "fingerprint": "abc123"},
    }


def test_accounts_come_soonest_empty_first_with_skipped_ones_and_the_shortfall() -> None:
    text = fleet_text(fleet_view())
    lines = text.splitlines()
    assert lines[0].startswith("Fleet: 4 subaccount(s) guarded, 1 skipped; 12 list calls")
    order = [line.split(":")[0].strip() for line in lines if line.startswith("  ") and
             not line.startswith("      ")]  # fmt: skip
    assert order[:4] == ["soon0001", "Stuck (susp0001) SUSPENDED", "Late (late0001)",
                         "Idle (idle0001)"]  # fmt: skip
    assert "dry in 3 min" in text
    assert "no spend seen" in text
    assert "last:     transfer #4 of 10.00 EUR: succeeded" in text
    assert "skipped shared01: shares the primary account's balance" in text
    assert "Shortfall: the primary cannot cover the fleet" in text
    assert "  Late (late0001) in 67 min" in text


def test_a_single_account_status_has_no_fleet_part() -> None:
    status: dict[str, Any] = {"decision": None, "forecast": None, "caps_used": {}}
    assert "Fleet" not in status_text(status)
    assert "Fleet: 4 subaccount(s)" in status_text({**status, "fleet": fleet_view()})
