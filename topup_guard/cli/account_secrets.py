"""``topup-guard secrets list|create|revoke|rotate``: API secrets without ever exposing one.

A new secret is read from stdin or a file, never from argv (argv is visible in ``ps`` and shell
history). ``rotate`` is ordered so the account is never left without a working secret:

1. list the secrets (Vonage allows two; with two already, one must be revoked first);
2. generate a strong secret and create it; the new id is the one that appeared in the list;
3. prove it: read the balance with a fresh client that uses only the new secret;
4. hand it over once: a new 0600 file (reserved before step 2, never overwritten) or stdout;
5. only then revoke the old one. A failure at any step after 2 revokes nothing.

The secret in use cannot be identified by its value (Vonage never returns values), so the old
secret is ``--revoke ID`` or, failing that, the one secret that existed before step 2.

Without ``--output`` stdout carries the secret alone (with ``--json``: one document holding the
secret and both ids, written before the revoke) and every report goes to stderr, so
``topup-guard secrets rotate > file`` captures nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import secrets
import string
import sys
from pathlib import Path

from topup_guard.cli._common import (
    AMBIGUOUS,
    client_for,
    emit,
    err,
    out,
    say,
    settings_for_api,
    stdin_is_tty,
)
from topup_guard.config import Settings
from topup_guard.errors import ConfigError, VonageError
from topup_guard.model import Secret
from topup_guard.vonage import VonageClient
from topup_guard.vonage.payloads import secret_is_valid

MAX_SECRETS = 2
GENERATED_LENGTH = 24
"""Within Vonage's 8-25; 24 characters of 62 symbols is about 142 bits."""
_ALPHABET = string.ascii_letters + string.digits


def _secret_json(s: Secret) -> dict[str, str]:
    return {"id": s.id, "created_at": s.created_at}


async def secrets_list(args: argparse.Namespace) -> int:
    async with client_for(settings_for_api()) as client:
        found = await client.list_secrets()
    text = "\n".join(f"{s.id}  created {s.created_at}" for s in found) or "(no secrets)"
    emit(args, [_secret_json(s) for s in found], text)
    return 0


def _read_new_secret(path: Path | None) -> str:
    """From the file, from a no-echo prompt on a terminal, or the first line of piped stdin."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"--secret-file: cannot read {path} ({exc.strerror})"]) from None
    if stdin_is_tty():
        return getpass.getpass("New API secret (not echoed): ").strip()
    return sys.stdin.readline().strip()


async def secrets_create(args: argparse.Namespace) -> int:
    settings = settings_for_api()
    value = _read_new_secret(args.secret_file)
    if not value:
        err("no secret given: pipe it on stdin or pass --secret-file FILE")
        return 2
    async with client_for(settings) as client:
        created = await client.create_secret(value)  # InvalidSecretError never echoes it
    emit(args, _secret_json(created), f"Created secret {created.id}.")
    return 0


async def secrets_revoke(args: argparse.Namespace) -> int:
    async with client_for(settings_for_api()) as client:
        await client.revoke_secret(args.secret_id)
    emit(args, {"revoked": args.secret_id}, f"Revoked secret {args.secret_id}.")
    return 0


def generate_secret() -> str:
    """A random secret meeting Vonage's rules (a lower, an upper and a digit; 8-25 chars)."""
    while True:
        candidate = "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_LENGTH))
        if secret_is_valid(candidate):
            return candidate


class _Destination:
    """Where the new secret goes, exactly once: a file reserved up front, or stdout.

    The file is created exclusively with mode 0600 *before* the account changes, so an existing
    file or an unwritable directory stops the rotation while nothing has happened yet.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = False
        self._fd: int | None = None
        if path is not None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise ConfigError([f"--output: {path} exists; refusing to overwrite it"]) from None
            except OSError as exc:
                raise ConfigError([f"--output: cannot create {path} ({exc.strerror})"]) from None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else "stdout"

    def write(self, text: str) -> None:
        """Write once; the file is flushed to disk before the old secret may be revoked."""
        if self._fd is None:
            out(text)
        else:
            fd, self._fd = self._fd, None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        self.written = True

    def discard(self) -> None:
        """Remove the reserved file if nothing was written to it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None and not self.written:
            with contextlib.suppress(OSError):
                self.path.unlink()


async def _create(client: VonageClient, value: str, before: set[str]) -> str | None:
    """The new secret's id. After an ambiguous answer the list tells whether it was created."""
    try:
        return (await client.create_secret(value)).id
    except AMBIGUOUS as exc:
        say(f"Creating the secret gave no clear answer ({type(exc).__name__}); checking the list.")
    appeared = {s.id for s in await client.list_secrets()} - before
    return appeared.pop() if len(appeared) == 1 else None


async def _proves(settings: Settings, value: str) -> str | None:
    """None when the new secret authenticates on its own, else why not."""
    try:
        async with client_for(settings, api_secret=value) as fresh:
            await fresh.get_balance()
    except VonageError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def secrets_rotate(args: argparse.Namespace) -> int:
    settings = settings_for_api()
    destination = _Destination(args.output)
    try:
        return await _rotate(args, settings, destination)
    finally:
        destination.discard()


def _kept(old: str, new_id: str) -> str:
    return (
        f"the old secret {old} was NOT revoked and still works; remove the new one with: "
        f"topup-guard secrets revoke {new_id}"
    )


async def _rotate(args: argparse.Namespace, settings: Settings, destination: _Destination) -> int:
    async with client_for(settings) as client:
        before = {s.id for s in await client.list_secrets()}
        if len(before) >= MAX_SECRETS:
            err(
                f"the account already has {len(before)} secrets, the most Vonage allows; "
                "revoke the one not in use first (topup-guard secrets list, then "
                "topup-guard secrets revoke ID)"
            )
            return 1
        old = args.revoke if args.revoke is not None else next(iter(before), None)
        if old is None or old not in before:
            err(f"--revoke: no secret with id {old!r} on this account")
            return 2
        value = generate_secret()
        new_id = await _create(client, value, before)
        if new_id is None:
            err("the new secret was not created; nothing was changed")
            return 1
        say(f"Created secret {new_id}; checking that it authenticates.")
        if (why := await _proves(settings, value)) is not None:
            err(f"the new secret {new_id} does not authenticate ({why}); {_kept(old, new_id)}")
            return 1
        handed = {"new_secret_id": new_id, "old_secret_id": old, "written_to": str(destination)}
        try:
            if args.json and args.output is None:
                destination.write(json.dumps({**handed, "secret": value}, indent=2))
            else:
                destination.write(value)
        except OSError as exc:
            err(f"could not write the new secret ({exc.strerror}); {_kept(old, new_id)}")
            return 1
        try:
            await client.revoke_secret(old)
        except VonageError as exc:
            err(
                f"the new secret {new_id} is in {destination}, but revoking the old secret {old} "
                f"failed ({type(exc).__name__}: {exc}); revoke it with: "
                f"topup-guard secrets revoke {old}"
            )
            return 1
    text = f"Rotated: new secret {new_id} written to {destination}; old secret {old} revoked."
    if args.output is None:
        say(text)  # stdout carries the secret itself and nothing else
    else:
        emit(args, {**handed, "revoked": True}, text)
    return 0
