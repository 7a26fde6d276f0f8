"""One generic registry behind every named choice (routers, backends, corpora, tokenizers, claim kinds,
activations, optimizers, plots, lm-eval tasks): duplicate names are a bug, an unknown name is the user's typo
and gets a did-you-mean, and the CLI and docs list what exists from the same place."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from moebench.errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str):
        self.what = what  # "router", "corpus", ...: used in messages
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise TypeError(f"{self.what} {name!r} registered twice")
        self._items[name] = item
        return item

    def replace(self, name: str, item: T) -> T:
        """Swap an existing entry (a demo or test that wraps a backend); a new name must go through add()."""
        self[name]
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@ROUTERS.register("topk")`."""
        return lambda item: self.add(name, item)

    def unknown(self, name) -> str:
        """The one-line message for a name that is not registered, with the closest match and the choices."""
        return f"unknown {self.what} {name!r}{did_you_mean(name, self._items)}; choose from {', '.join(self.names())}"

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UserError(self.unknown(name)) from None

    def get(self, name: str, default=None):
        return self._items.get(name, default)

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return self._items.items()

    def values(self):
        return self._items.values()
