"""A worker's bounded memory of fingerprints a shared seen-set is known to hold.

Most links a page has were queued already: on the benchmark site nine in ten. A shared
frontier would pack, send and test every one of them on the server; a worker that
remembers the fingerprints it has seen the server hold can leave those out. Nothing
is ever removed from a crawl's seen-set, so a remembered fingerprint stays true: the
cache can only forget (and then the server answers, as without it), never be wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Known"]


class Known:
    """Remember up to about ``2 * size`` fingerprints, the most recently added first.

    Two generations instead of an LRU: adding is a set insert, and a full generation is
    dropped whole, which keeps what the crawl met recently, where most repeats are.
    """

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._new: set[int] = set()
        self._old: set[int] = set()

    def __contains__(self, key: int) -> bool:
        return key in self._new or key in self._old

    def __len__(self) -> int:
        return len(self._new | self._old)

    def update(self, keys: Iterable[int]) -> None:
        """Remember ``keys``: the server answered for them, so its seen-set holds them."""
        self._new.update(keys)
        if len(self._new) >= self._size:
            self._old, self._new = self._new, set()
