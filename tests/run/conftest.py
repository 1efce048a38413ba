"""Receivers for the ``run`` process tests: a local Slack and a local OTLP collector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.otlp_receiver import Receiver
from tests.run.slack_receiver import SlackReceiver


@pytest.fixture
async def slack() -> AsyncIterator[SlackReceiver]:
    receiver = SlackReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def collector() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
