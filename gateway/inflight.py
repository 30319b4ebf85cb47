"""Requests in flight by workflow, each with what cuts it (for the kill switch)."""

from __future__ import annotations

from collections.abc import Callable

Pair = tuple[str, str]  # (gateway key, workflow id)


class Cuts:
    """Requests in flight by workflow, each with the callable that cuts it (the kill
    switch), and what the cost-anomaly check knows."""

    def __init__(self) -> None:
        self._cuts: dict[Pair, set[Callable[[], None]]] = {}
        self.medians: dict[str, int] = {}  # kind -> median completed cost (micro-USD)
        self.flagged: set[Pair] = set()  # bounded: cleared when large

    def add(self, pair: Pair, cut: Callable[[], None]) -> None:
        self._cuts.setdefault(pair, set()).add(cut)

    def remove(self, pair: Pair, cut: Callable[[], None]) -> None:
        cuts = self._cuts.get(pair)
        if cuts is not None:
            cuts.discard(cut)
            if not cuts:
                del self._cuts[pair]

    def cut(self, pair: Pair) -> int:
        """Cut every request in flight of the workflow; how many."""
        cuts = list(self._cuts.pop(pair, ()))
        for cut in cuts:
            cut()
        return len(cuts)

    def pairs(self) -> list[Pair]:
        return list(self._cuts)
