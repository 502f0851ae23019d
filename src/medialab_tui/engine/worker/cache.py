"""An LRU cache of loaded pipelines with a memory budget.

The second job on the same model pays no load time; when a new model does not
fit the budget, the least recently used ones are dropped first.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class PipelineCache:
    """Loaded pipelines keyed by (model path, purpose), newest last."""

    def __init__(self, budget_bytes: int, size_of: Callable[[Any], int]) -> None:
        self.budget_bytes = budget_bytes
        self._size_of = size_of
        self._items: OrderedDict[tuple[str, ...], tuple[Any, int]] = OrderedDict()
        self.loads = 0  # misses: what was loaded, for the engine's placement

    def get(self, key: tuple[str, ...], load: Callable[[], Any]) -> tuple[Any, bool]:
        """The cached pipeline for `key` (loading it if needed) and whether it was a hit."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key][0], True
        pipe = load()
        self.loads += 1
        size = self._size_of(pipe)
        self._evict_for(size)
        self._items[key] = (pipe, size)
        return pipe, False

    def _evict_for(self, size: int) -> None:
        while self._items and self.used_bytes + size > self.budget_bytes:
            self._items.popitem(last=False)
        gc.collect()

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._items.values())

    def keys(self) -> list[tuple[str, ...]]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()
        gc.collect()
