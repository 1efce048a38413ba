"""A fleet's transfer history written through the real transfer ledger (SQLite or Redis): the
same three transfers whichever store, so the ledger command's tests can compare them."""

from __future__ import annotations

from decimal import Decimal

from topup_guard.fleet.transfer_base import TransferLedger, TransferState

NOW = 1_800_000_000.0
SUB_A, SUB_B, SUB_C = "sub0000a", "sub0000b", "sub0000c"


async def write_transfers(ledger: TransferLedger, *, epoch: int = 0, holder: str = "pod-a") -> None:
    """A: in doubt, settled by the listing (then a racer's late "failed", superseded);
    B: refused by Vonage; C: still in doubt."""
    a = await ledger.begin(SUB_A, Decimal(10), "dry in 90 s", NOW - 3600, epoch, holder)
    await ledger.transition(a.transfer_id, TransferState.UNKNOWN, wall=NOW - 3599, epoch=epoch,
                            detail="read timeout after sending")  # fmt: skip
    await ledger.transition(a.transfer_id, TransferState.SUCCEEDED, wall=NOW - 3590, epoch=epoch,
                            vonage_id="v-77", applied_amount=Decimal("10.00"),
                            detail="the listing shows the reference")  # fmt: skip
    await ledger.transition(a.transfer_id, TransferState.FAILED, wall=NOW - 3500, epoch=epoch,
                            detail="late word")  # fmt: skip
    b = await ledger.begin(SUB_B, Decimal(20), "below the floor", NOW - 600, epoch, holder)
    await ledger.transition(b.transfer_id, TransferState.FAILED, wall=NOW - 599, epoch=epoch,
                            detail="refused: Insufficient Credit")  # fmt: skip
    await ledger.begin(SUB_C, Decimal(5), "below the floor", NOW - 60, epoch, holder)
