"""Import aiohttp without its import-time CA loading: each context reads the trust store when used.

aiohttp builds two SSL contexts as it is imported (verified and unverified), and each loads the
system's CA bundle: about 150 certificates, 1.3 MB and 10-30 ms apiece. A guard that talks plain
HTTP (the simulator, a local proxy) never uses them; one that talks HTTPS uses the verified one
only. Inside ``deferred_ca_loading()``, ``SSLContext.set_default_verify_paths()`` (which
``create_default_context`` calls) only notes the context; at the end, each noted context becomes
a ``DeferredCAContext``: the same object (protocol, verify mode, hostname check, options, ALPN)
that makes that call at its first handshake instead. ``SSL_CERT_FILE``/``SSL_CERT_DIR`` are
honoured as before; they are read then.

Fails closed: a context that somehow skipped the load has no CA, so verification fails; it never
accepts an unverified peer. Only contexts created inside the ``with`` are affected (in practice:
aiohttp's two, at its first import); afterwards ``ssl.SSLContext`` is untouched again.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()  # one CA load per context, whichever thread handshakes first
_patch_lock = threading.Lock()


class DeferredCAContext(ssl.SSLContext):
    """An ``SSLContext`` that loads the default CA paths at its first use."""

    _pending_default_paths = True

    def _load_pending(self) -> None:
        if self._pending_default_paths:
            with _lock:
                if self._pending_default_paths:
                    super().set_default_verify_paths()
                    self._pending_default_paths = False

    @property
    def ca_loading_deferred(self) -> bool:
        """True until the first use loaded the default CA paths."""
        return self._pending_default_paths

    def set_default_verify_paths(self) -> None:
        self._load_pending()

    # asyncio (and so aiohttp) uses wrap_bio; wrap_socket for blocking clients.
    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_pending()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_pending()
        return super().wrap_socket(*args, **kwargs)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        self._load_pending()
        return super().get_ca_certs(binary_form)


@contextlib.contextmanager
def deferred_ca_loading() -> Iterator[None]:
    """Within: SSL contexts created (by an import, typically) defer their CA loading."""
    noted: list[ssl.SSLContext] = []

    def note(self: ssl.SSLContext) -> None:
        noted.append(self)

    with _patch_lock:
        patched = "set_default_verify_paths" not in vars(ssl.SSLContext)  # else nested
        if patched:
            ssl.SSLContext.set_default_verify_paths = note  # type: ignore[method-assign]
    if not patched:
        yield
        return
    try:
        yield
    finally:
        with _patch_lock:
            del ssl.SSLContext.set_default_verify_paths
        for context in noted:
            if type(context) is ssl.SSLContext:
                context.__class__ = DeferredCAContext
            else:  # a subclass we cannot re-class safely: load now, as without us
                context.set_default_verify_paths()


def import_aiohttp() -> None:
    """Import aiohttp (if not yet imported) with its two SSL contexts deferring CA loading."""
    with deferred_ca_loading():
        import aiohttp  # noqa: F401
