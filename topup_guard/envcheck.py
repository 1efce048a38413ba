"""Plain-language configuration errors: unknown variables and pydantic's complaints as sentences.

Pure functions over names and error records, so ``config.py`` keeps the settings and this module
keeps the wording. Two rules hold throughout: a problem names the variable, and a value is shown
only when the variable is not a secret (a secret pasted into the wrong variable must not end up
in a log or a CI transcript).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

# Prefixes this program owns. Any variable under TOPUP_GUARD_ must be one we read. VONAGE_ is
# shared with other tools (the Vonage SDKs read VONAGE_APPLICATION_ID, VONAGE_PRIVATE_KEY, ...), so
# only a near miss of one of *our* VONAGE_ names is refused: that is a typo, not someone else's.
OWN_PREFIX = "TOPUP_GUARD_"
SHARED_PREFIX = "VONAGE_"
_NEAR_MISS = 0.85  # difflib ratio above which a VONAGE_ name counts as a typo of ours
_SUGGEST = 0.6  # difflib's default cutoff: below it no suggestion is better than a wrong one


def unknown_variables(environ: Mapping[str, str], known: Collection[str]) -> list[str]:
    """One problem per variable that looks meant for us but is not a name we read."""
    problems: list[str] = []
    for name in sorted(environ):
        if name in known or kubernetes_service_link(name, environ[name]):
            continue
        if name.startswith(OWN_PREFIX):
            problems.append(_unknown(name, known))
        elif name.startswith(SHARED_PREFIX):
            ours = [k for k in known if k.startswith(SHARED_PREFIX)]
            if _close(name, ours, _NEAR_MISS):
                problems.append(_unknown(name, ours))
    return problems


# Kubernetes puts "service links" into every pod of a namespace: a Service named topup-guard gives
# TOPUP_GUARD_SERVICE_HOST, TOPUP_GUARD_PORT=tcp://10.0.0.7:8080, TOPUP_GUARD_PORT_8080_TCP_ADDR...
# Refusing them would crash-loop the guard in the namespace of its own Service. The value is
# checked too, so a typo such as TOPUP_GUARD_HELTH_PORT=8080 is still caught.
_LINK = re.compile(
    r"^[A-Z0-9_]+?_(?P<kind>SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|"
    r"PORT(?:_\d+_(?:TCP|UDP|SCTP)(?P<part>_PROTO|_PORT|_ADDR)?)?)$"
)
_URL = re.compile(r"^(?:tcp|udp|sctp)://[0-9A-Fa-f:.\[\]]+:\d+$")
_ADDR = re.compile(r"^[0-9A-Fa-f:.]+$")


def kubernetes_service_link(name: str, value: str) -> bool:
    """True for a variable Kubernetes injects for a Service (name *and* value have its shape)."""
    match = _LINK.match(name)
    if match is None:
        return False
    kind, part = match.group("kind"), match.group("part")
    if kind == "SERVICE_HOST" or part == "_ADDR":
        return bool(_ADDR.match(value))
    if kind.startswith("SERVICE_PORT") or part == "_PORT":
        return value.isdigit()
    if part == "_PROTO":
        return value in ("TCP", "UDP", "SCTP", "tcp", "udp", "sctp")
    return bool(_URL.match(value))  # X_PORT and X_PORT_8080_TCP: tcp://10.0.0.7:8080


def _unknown(name: str, known: Iterable[str]) -> str:
    # Compare what follows the shared prefix: the prefix alone would make any name look close.
    prefix = OWN_PREFIX if name.startswith(OWN_PREFIX) else SHARED_PREFIX
    tails = {k.removeprefix(prefix): k for k in known if k.startswith(prefix)}
    if prefix == OWN_PREFIX:  # TOPUP_GUARD_API_KEY means VONAGE_API_KEY
        tails |= {k.removeprefix(SHARED_PREFIX): k for k in known if k.startswith(SHARED_PREFIX)}
    tail = name.removeprefix(prefix)
    close = [tails[t] for t in _close(tail, sorted(tails), _SUGGEST)]
    what = f"{name}: not a variable topup-guard reads"
    if name.endswith("_FILE") and name.removesuffix("_FILE") in known:
        return f"{what}: only secrets have a _FILE variant; set {name.removesuffix('_FILE')}"
    if close:
        return f"{what}; did you mean {close[0]}? (a typo would otherwise pass silently)"
    return f"{what} (see `topup-guard config` for every setting); unset it"


def sentence(error: Mapping[str, Any], *, secret: bool) -> str:
    """What one pydantic error means, as a sentence; the bad value appended when not secret."""
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    text = _SENTENCES.get(kind)
    if text is not None:
        what = text.format(**{k: _plain(v) for k, v in ctx.items()})
    else:
        what = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    raw = error.get("input")
    if secret or raw is None or isinstance(raw, dict):
        return what  # a secret, or a model-level rule (its input is every setting)
    if kind == "value_error":
        return what  # our own validators show what is safe to show (a URL may hold a password)
    return f"{what}, not {str(raw)!r}"


def _plain(value: object) -> str:
    text = str(value)
    return text.removesuffix(".0") if text.endswith(".0") else text


_SENTENCES = {
    "finite_number": "must be a finite number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "decimal_parsing": "must be a decimal number such as 12.50",
    "decimal_type": "must be a decimal number such as 12.50",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_type": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "literal_error": "must be {expected}",
    "string_type": "must be text",
    "path_type": "must be a file path",
    "missing": "is required but not set",
}


def _close(word: str, candidates: Iterable[str], cutoff: float) -> list[str]:
    """difflib's closest match, imported only when a name needs one (rare: a typo)."""
    import difflib

    return difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
