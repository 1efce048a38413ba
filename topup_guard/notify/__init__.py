"""Slack notifications: what the guard did and why, for the people who run it.

``messages`` turns events into Block Kit messages (pure), ``conditions`` de-duplicates condition
alerts, ``transport`` speaks to Slack, and ``SlackNotifier`` ties them into a non-blocking sink.
``transport`` (and with it slack_sdk) is imported only when Slack is configured.
"""

from topup_guard.notify.messages import SlackMessage, render
from topup_guard.notify.slack import SlackNotifier

__all__ = ["SlackMessage", "SlackNotifier", "render"]
