"""What the simulated account refuses, named by the Vonage error it stands for.

The model (``account.py``) knows nothing about HTTP; it raises ``SimRefusal`` with a ``code`` and
the server (``wire.py``) turns each code into the exact status and body Vonage sends. Keeping the
mapping in one table means the backtest can reuse the model without dragging the wire format in.
"""

from __future__ import annotations

from typing import Literal

RefusalCode = Literal[
    "not-auto-reload-enabled",  # top-up: wrong trx, or auto-reload off (401 legacy)
    "topup-failed",  # top-up: the payment failed (401 legacy, error-code 420)
    "secret-validation",  # create secret: complexity rules (400 problem)
    "add-excess-secret",  # create secret: already 2 (403 problem)
    "delete-last-secret",  # revoke the only secret (403 problem)
    "invalid-id",  # unknown secret id (404 problem)
    "invalid-api-key",  # unknown api key in a path (404 problem)
    "insufficient-credit",  # balance transfer larger than the source can give (403 problem)
    "invalid-transfer",  # transfer not between the primary and one of its subaccounts (403)
    "transfer-validation",  # malformed transfer request or list filter (422 problem)
]


class SimRefusal(Exception):
    """The account refused a request, exactly as Vonage would; nothing was changed.

    ``invalid_parameters`` lists ``{"name": ..., "reason": ...}`` for validation refusals.
    """

    def __init__(
        self,
        code: RefusalCode,
        detail: str = "",
        invalid_parameters: list[dict[str, str]] | None = None,
    ) -> None:
        self.code: RefusalCode = code
        self.detail = detail
        self.invalid_parameters = list(invalid_parameters or [])
        super().__init__(f"{code}: {detail}" if detail else code)
