"""secrets list|create|revoke|rotate against the simulator: never a lock-out, never a leak."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from tests.cli.helpers import Run, secret_ids
from tests.simctl import sim_post
from topup_guard.cli.account_secrets import generate_secret
from topup_guard.config import DEMO_API_KEY, DEMO_API_SECRET
from topup_guard.sim import RunningSimulator
from topup_guard.vonage.payloads import secret_is_valid

pytestmark = pytest.mark.usefixtures("account_env")


def authenticates(sim: RunningSimulator, secret: str) -> bool:
    return sim.account.authenticate(DEMO_API_KEY, secret)


def test_generated_secrets_meet_vonages_rules_and_differ() -> None:
    made = {generate_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(secret_is_valid(s) for s in made)


async def test_secrets_list_shows_ids_in_text_and_json(
    cli: Run, account_env: RunningSimulator
) -> None:
    (only,) = secret_ids(account_env)
    code, out, _ = await cli("secrets", "list")
    assert code == 0
    assert only in out
    code, out, _ = await cli("secrets", "list", "--json")
    assert [s["id"] for s in json.loads(out)] == [only]


async def test_secrets_create_reads_the_secret_from_stdin(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, out, err = await cli("secrets", "create", "--json", stdin=io.StringIO("Piped0Secret\n"))
    assert code == 0, err
    assert json.loads(out)["id"] in secret_ids(account_env)
    assert authenticates(account_env, "Piped0Secret")
    assert "Piped0Secret" not in out + err


async def test_secrets_create_reads_the_secret_from_a_file(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "new-secret"
    path.write_text("FromFile9Secret\n")
    code, out, err = await cli("secrets", "create", "--secret-file", str(path))
    assert code == 0, err
    assert authenticates(account_env, "FromFile9Secret")
    assert "FromFile9Secret" not in out + err


async def test_secrets_create_never_takes_the_secret_from_argv(cli: Run) -> None:
    with pytest.raises(SystemExit) as exc:
        await cli("secrets", "create", "Argv0Secret")
    assert exc.value.code == 2


async def test_secrets_create_refuses_a_weak_secret_without_echoing_it(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    path = tmp_path / "weak"
    path.write_text("alllowercase\n")
    code, out, err = await cli("secrets", "create", "--secret-file", str(path))
    assert code == 1
    assert "InvalidSecretError" in err
    assert "alllowercase" not in out + err
    assert len(secret_ids(account_env)) == 1


async def test_secrets_revoke_removes_the_given_secret(
    cli: Run, account_env: RunningSimulator
) -> None:
    extra = account_env.account.create_secret(DEMO_API_KEY, "Another1Secret", 0.0)
    code, _, err = await cli("secrets", "revoke", extra.id)
    assert code == 0, err
    assert extra.id not in secret_ids(account_env)


# --- rotate -------------------------------------------------------------------------------


async def test_rotate_writes_a_working_secret_once_0600_and_revokes_the_old(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    (old_id,) = secret_ids(account_env)
    target = tmp_path / "secret"
    code, out, err = await cli("secrets", "rotate", "--output", str(target))
    assert code == 0, err
    new = target.read_text().strip()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert authenticates(account_env, new)
    assert not authenticates(account_env, DEMO_API_SECRET)
    ids = secret_ids(account_env)
    assert len(ids) == 1
    assert old_id not in ids
    assert new not in out + err  # only in the file
    assert DEMO_API_SECRET not in out + err


async def test_rotate_to_stdout_prints_only_the_new_secret(
    cli: Run, account_env: RunningSimulator
) -> None:
    code, out, err = await cli("secrets", "rotate")
    assert code == 0, err
    new = out.strip()
    assert out == new + "\n"
    assert authenticates(account_env, new)
    assert not authenticates(account_env, DEMO_API_SECRET)
    assert DEMO_API_SECRET not in out + err
    assert "Rotated" in err


async def test_rotate_json_to_stdout_carries_the_secret_and_both_ids(
    cli: Run, account_env: RunningSimulator
) -> None:
    (old_id,) = secret_ids(account_env)
    code, out, _ = await cli("secrets", "rotate", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["old_secret_id"] == old_id
    assert secret_ids(account_env) == [data["new_secret_id"]]
    assert authenticates(account_env, data["secret"])


async def test_rotate_is_refused_while_the_account_has_two_secrets(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    account_env.account.create_secret(DEMO_API_KEY, "Second2Secret", 0.0)
    before = secret_ids(account_env)
    target = tmp_path / "secret"
    code, _, err = await cli("secrets", "rotate", "--output", str(target))
    assert code == 1
    assert "revoke the one not in use first" in err
    assert secret_ids(account_env) == before
    assert not target.exists()


async def test_rotate_refuses_to_overwrite_an_existing_file_before_changing_anything(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    before = secret_ids(account_env)
    target = tmp_path / "secret"
    target.write_text("keep me\n")
    code, _, err = await cli("secrets", "rotate", "--output", str(target))
    assert code == 2
    assert "exists" in err
    assert target.read_text() == "keep me\n"
    assert secret_ids(account_env) == before


async def test_rotate_keeps_the_old_secret_when_the_new_one_cannot_be_proven(
    cli: Run, account_env: RunningSimulator, tmp_path: Path
) -> None:
    (old_id,) = secret_ids(account_env)
    await sim_post(
        account_env, "/_sim/faults", {"endpoint": "get-balance", "kind": "error_500_before"}
    )
    target = tmp_path / "secret"
    code, out, err = await cli("secrets", "rotate", "--output", str(target))
    assert code == 1
    assert "was NOT revoked" in err
    assert authenticates(account_env, DEMO_API_SECRET)
    assert old_id in secret_ids(account_env)
    assert not target.exists()  # an unproven secret is never handed out
    assert out == ""


async def test_rotate_with_an_unknown_revoke_id_changes_nothing(
    cli: Run, account_env: RunningSimulator
) -> None:
    before = secret_ids(account_env)
    code, out, err = await cli("secrets", "rotate", "--revoke", "no-such-id")
    assert code == 2
    assert "no-such-id" in err
    assert out == ""
    assert secret_ids(account_env) == before


async def test_rotate_with_the_right_revoke_id_rotates(
    cli: Run, account_env: RunningSimulator
) -> None:
    (old_id,) = secret_ids(account_env)
    code, _, err = await cli("secrets", "rotate", "--revoke", old_id)
    assert code == 0, err
    assert old_id not in secret_ids(account_env)
