"""On a fresh machine the whole suite runs: a missing tool fails a test, saying how to get it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tests.redisproc as redisproc

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SKIPS = re.compile(r"pytest\.skip\(|mark\.skip(if)?\b|importorskip\(")


def test_no_test_skips() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in TESTS.rglob("*.py")
        if path.name != Path(__file__).name
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if SKIPS.search(line)
    ]
    assert offenders == [], "a test that skips on a fresh machine tests nothing there"


def test_a_missing_redis_server_fails_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redisproc, "REDIS_SERVER", None)
    with pytest.raises(
        pytest.fail.Exception, match=r"make test-deps.*apt-get install redis-server"
    ):
        redisproc.redis_binary()


def test_make_test_brings_redis_promtool_and_helm_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\btest-deps\b", makefile, re.MULTILINE)
    assert re.search(r"^check-deploy: .*\btest-deps\b", makefile, re.MULTILINE)
    script = (ROOT / "scripts" / "test-deps.sh").read_text()
    assert 'apt-get install -y -qq "$2"' in script
    assert "deb redis-server redis-server" in script
    assert "deb promtool prometheus" in script
    assert "scripts/get-helm.sh" in script
    assert "exit 1" in script
