"""Redaction shared by logs and traces: the last line of defence against a leaked secret.

Code should never put a secret into a log field or a span attribute in the first place; this
module catches the mistakes. Two mechanisms, in the spirit of logfire's scrubbing:

- **Known values.** ``register_secret(value)`` at start for every configured secret (API secret,
  trx, Slack token and webhook URL, collector headers); every occurrence, raw or percent-encoded,
  is replaced in any text that passes through ``scrub_text``.
- **Shapes.** Keys that name a secret (``is_secret_key``) get their value masked; ``key=value``
  pairs for such keys, ``Authorization`` credentials, Slack tokens and webhook paths, and query
  strings of URLs are masked inside free text.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "[redacted]"

# Words that mark a key (attribute, log field, form field) as carrying a secret. Substring match,
# case-insensitive: "slack_webhook_url", "http.request.header.authorization", "api_secret".
SECRET_KEY_WORDS = (
    "secret",
    "password",
    "passwd",
    "token",
    "trx",
    "authorization",
    "webhook",
    "cookie",
    "credential",
    "private_key",
)
_KEY_RE = re.compile("|".join(re.escape(w) for w in SECRET_KEY_WORDS), re.IGNORECASE)

# Shapes of secrets inside free text (exception messages, URLs, details).
_PAIR_RE = re.compile(
    r"(?P<key>[\w.\-]*(?:" + "|".join(SECRET_KEY_WORDS) + r")[\w.\-]*)"
    r"(?P<sep>\"?\s*[=:]\s*\"?)(?P<value>[^\s&,;\"'}]+)",
    re.IGNORECASE,
)
_AUTH_RE = re.compile(r"\b(?P<scheme>Basic|Bearer|Token)\s+[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
_SLACK_TOKEN_RE = re.compile(r"\bxox[a-z]-[A-Za-z0-9\-]{6,}")
_SLACK_HOOK_RE = re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s\"'?#]+")
_URL_QUERY_RE = re.compile(r"(?P<base>\bhttps?://[^\s?#\"']+)\?[^\s#\"']*")
_URL_USERINFO_RE = re.compile(r"(?P<scheme>\bhttps?://)[^/\s@\"']+@")
_LONG_HEX_RE = re.compile(r"\b[0-9a-fA-F]{32,}\b")  # a trx is 32 hex digits

_MIN_SECRET_LEN = 4  # shorter "secrets" would mask half of every line; config rejects them anyway
_lock = threading.Lock()
_known: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it shows up. Idempotent."""
    global _known
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    with _lock:
        merged = set(_known) | forms
        # Longest first, so a secret containing another is masked whole.
        _known = tuple(sorted(merged, key=len, reverse=True))


def clear_secrets() -> None:
    """Forget every registered secret (tests only)."""
    global _known
    with _lock:
        _known = ()


def is_secret_key(key: str) -> bool:
    """True when a key's name says its value is a secret (``api_secret``, ``Authorization``...)."""
    return _KEY_RE.search(key) is not None


def mask_known(text: str) -> str:
    """Replace every registered secret value in ``text``."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def strip_url(url: str) -> str:
    """Drop the query string, fragment and user info of a URL; keep scheme, host and path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = _SLACK_HOOK_RE.sub(r"\1" + MASK, netloc + parts.path)[len(netloc) :]
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def scrub_text(text: str) -> str:
    """Mask known secrets and anything shaped like one in free text."""
    text = mask_known(text)
    text = _URL_USERINFO_RE.sub(r"\g<scheme>", text)
    text = _URL_QUERY_RE.sub(r"\g<base>?" + MASK, text)
    text = _SLACK_HOOK_RE.sub(r"\1" + MASK, text)
    text = _AUTH_RE.sub(r"\g<scheme> " + MASK, text)
    text = _SLACK_TOKEN_RE.sub(MASK, text)
    text = _PAIR_RE.sub(r"\g<key>\g<sep>" + MASK, text)
    return _LONG_HEX_RE.sub(MASK, text)


def scrub_value(key: str, value: object) -> object:
    """The value to keep for ``key``: masked for secret keys, URLs stripped, text scrubbed."""
    if is_secret_key(key):
        return MASK
    if isinstance(value, str):
        if "url" in key.lower():
            return scrub_text(strip_url(value))
        return scrub_text(value)
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(key, v) for v in value)
    return value


def scrub_tree(key: str, value: object) -> object:
    """``scrub_value`` applied through JSON-like dicts and lists (keys name their values)."""
    if isinstance(value, dict):
        return {k: scrub_tree(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_tree(key, v) for v in value]
    return scrub_value(key, value)
