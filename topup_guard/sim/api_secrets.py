"""API secrets of one simulated account: Vonage's rules, none of its storage.

At most two secrets, never fewer than one, and each new one 8-25 characters with a lower-case
letter, an upper-case letter and a digit. The values are kept to authenticate Basic auth, never
returned and never shown in a ``repr``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from topup_guard.sim.refusals import SimRefusal

MAX_SECRETS = 2
_COMPLEXITY = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"\d"))


@dataclass(slots=True)
class SimSecret:
    """One secret; ``value`` is excluded from ``repr`` so it cannot leak through a log line."""

    id: str
    created_at: str
    value: str = field(repr=False)


def is_valid_secret(value: str) -> bool:
    """Vonage's complexity rule for a new secret."""
    return 8 <= len(value) <= 25 and all(p.search(value) for p in _COMPLEXITY)


class SecretStore:
    """The secrets of one API key. ``new_id`` makes ids (seeded in the model, so runs repeat)."""

    def __init__(self, initial: str, created_at: str, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._secrets = [SimSecret(new_id(), created_at, initial)]

    def __repr__(self) -> str:
        return f"SecretStore(ids={[s.id for s in self._secrets]!r})"

    def list(self) -> list[SimSecret]:
        return list(self._secrets)

    def get(self, secret_id: str) -> SimSecret:
        for secret in self._secrets:
            if secret.id == secret_id:
                return secret
        raise SimRefusal("invalid-id", f"ID '{secret_id}' could not be found")

    def create(self, value: object, created_at: str) -> SimSecret:
        if not isinstance(value, str) or not is_valid_secret(value):
            raise SimRefusal(
                "secret-validation",
                "The request failed due to validation errors",
                [{"name": "secret", "reason": "Does not meet complexity requirements"}],
            )
        if len(self._secrets) >= MAX_SECRETS:
            raise SimRefusal(
                "add-excess-secret",
                f"Account reached maximum number [{MAX_SECRETS}] of allowed secrets",
            )
        secret = SimSecret(self._new_id(), created_at, value)
        self._secrets.append(secret)
        return secret

    def revoke(self, secret_id: str) -> None:
        secret = self.get(secret_id)
        if len(self._secrets) == 1:
            raise SimRefusal("delete-last-secret", "Can not delete the last secret")
        self._secrets.remove(secret)

    def matches(self, candidate: str) -> bool:
        """True if ``candidate`` is a current secret (compared in constant time)."""
        given = candidate.encode()
        found = False
        for secret in self._secrets:
            found |= hmac.compare_digest(given, secret.value.encode())
        return found
