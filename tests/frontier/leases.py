"""Claim and settle one lease at a time, as the frontier tests need: ``settle`` takes a batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from framework.frontier import Frontier, Lease, LeaseLost, Settlement
from framework.http import Request


async def ack(
    frontier: Frontier,
    lease: Lease,
    discovered: Sequence[Request] = (),
    checkpoint: Mapping[str, Any] | None = None,
) -> list[Request]:
    """Settle ``lease`` as done; return its new discoveries, or raise ``LeaseLost``."""
    return await _settle(frontier, Settlement(lease, discovered), checkpoint)


async def fail(
    frontier: Frontier, lease: Lease, reason: str, discovered: Sequence[Request] = ()
) -> list[Request]:
    """Settle ``lease`` as failed for ``reason``; otherwise like ``ack``."""
    return await _settle(frontier, Settlement(lease, discovered, reason), None)


async def _settle(
    frontier: Frontier, settlement: Settlement, checkpoint: Mapping[str, Any] | None
) -> list[Request]:
    (new,) = await frontier.settle([settlement], checkpoint)
    if new is None:
        raise LeaseLost(f"the lease of {settlement.lease.request.url} was not held")
    return new


async def urls_claimed(frontier: Frontier) -> list[str]:
    """Claim until the frontier has nothing ready; return the URLs in claim order."""
    urls = []
    while isinstance(got := await frontier.claim(), Lease):
        urls.append(got.request.url)
    return urls
