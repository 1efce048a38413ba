"""Slack: a note as Block Kit (header, sections, fields, context) plus a plain-text fallback.

Limits come from Slack's Block Kit reference; text past a limit is cut with an ellipsis rather
than letting Slack reject the whole message (a rejected alert is worse than a shortened one).
The scope (environment and account) is the first context line and starts the fallback text, which
is what phones show. slack_sdk is imported only by ``build`` (``slack_transport``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from topup_guard.notify import format as f
from topup_guard.notify.note import Note

if TYPE_CHECKING:
    from topup_guard.notify.channels.slack_transport import Transport

Block = dict[str, Any]
SLACK_API_URL = "https://slack.com/api/"

HEADER_MAX = 150  # header block: plain_text up to 150 characters
SECTION_TEXT_MAX = 3000  # section text up to 3000 characters
FIELD_TEXT_MAX = 2000  # each section field up to 2000 characters
FIELDS_MAX = 10  # a section holds at most 10 fields
CONTEXT_ELEMENTS_MAX = 10  # a context block holds at most 10 elements


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": f.cut(text, HEADER_MAX)}}


def section(text: str, fields: Sequence[tuple[str, str]] = ()) -> Block:
    """A mrkdwn section; ``text`` must already be escaped, field values are escaped here."""
    block: Block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f.cut(text, SECTION_TEXT_MAX)},
    }
    if fields:
        block["fields"] = [
            {"type": "mrkdwn", "text": f.cut(f"*{label}*\n{f.escape(value)}", FIELD_TEXT_MAX)}
            for label, value in list(fields)[:FIELDS_MAX]
        ]
    return block


def context(*lines: str) -> Block:
    """Small grey print; ``lines`` must already be escaped. Empty lines are skipped."""
    elements = [{"type": "mrkdwn", "text": f.cut(ln, SECTION_TEXT_MAX)} for ln in lines if ln]
    return {"type": "context", "elements": elements[:CONTEXT_ELEMENTS_MAX]}


def _scope_line(note: Note) -> str:
    scope = note.scope
    who = f"`{f.escape(scope.account)}`" if scope.account else "unknown account"
    if scope.account_name:
        who = f"*{f.escape(scope.account_name)}* ({who})"
    env = f"environment *{f.escape(scope.environment)}* · " if scope.environment else ""
    return f"{env}account {who}"


def blocks(note: Note) -> list[Block]:
    """The note as Block Kit: header, scope, one section per paragraph (fields on the last)."""
    out: list[Block] = [header(f"{note.icon} {note.title}"), context(_scope_line(note))]
    paragraphs = list(note.paragraphs)
    for i, p in enumerate(paragraphs):
        text = f.escape(p.text)
        if p.label:
            text = f"*{f.escape(p.label)}:*" + ("\n" if "\n" in text else " ") + text
        out.append(section(text, note.fields if i == len(paragraphs) - 1 else ()))
    if not paragraphs and note.fields:
        out.append(section(f.escape(note.summary), note.fields))
    if note.listing is not None:
        listing = f.cut("*All settings*\n```" + f.escape(note.listing), SECTION_TEXT_MAX - 3)
        out.append(section(listing + "```"))
    footer = [f.escape(line) for line in note.footer if line]
    if footer:
        out.append(context(*footer))
    return out


def fallback(note: Note) -> str:
    return f.cut(f.escape(note.text), f.FALLBACK_MAX)


class SlackChannel:
    """Posts every note to Slack through a transport (incoming webhook or Web API)."""

    name = "slack"

    def __init__(self, transport: Transport, secrets: tuple[str, ...] = ()) -> None:
        self._transport = transport
        self.secrets = tuple(s for s in secrets if s)

    def accepts(self, note: Note) -> bool:
        return True

    async def send(self, note: Note) -> None:
        await self._transport.post(fallback(note), blocks(note))

    async def aclose(self) -> None:
        return None


def build(
    secrets: Mapping[str, str | None],
    channel: str | None,
    *,
    api_base_url: str = SLACK_API_URL,
    request_timeout: float = 10.0,
) -> SlackChannel | None:
    """The webhook if set, else the bot token and channel, else None (Slack not configured).

    ``secrets`` holds ``slack_webhook_url`` and ``slack_token`` (either may be None).
    """
    url, token = secrets.get("slack_webhook_url"), secrets.get("slack_token")
    if not url and not (token and channel):
        return None
    from topup_guard.notify.channels.slack_transport import WebApiTransport, WebhookTransport

    if url:
        transport: Transport = WebhookTransport(url, request_timeout=request_timeout)
        return SlackChannel(transport, (url, url.split("/services/", 1)[-1]))
    assert token is not None
    assert channel is not None
    transport = WebApiTransport(
        token, channel, base_url=api_base_url, request_timeout=request_timeout
    )
    return SlackChannel(transport, (token,))
