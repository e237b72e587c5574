"""Name -> object registries with loud errors.

Models, datasets, optimizers, schedules and experiments are all looked up by
the names used in gin configs.  A typo must fail at once with the list of
valid names, not deep inside a run.
"""
from typing import Callable, Dict, Generic, Iterator, Optional, TypeVar

from tflottery.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind (e.g. 'model').

    check: None, or `check(name, obj)` run at registration, raising
    ConfigError when `obj` cannot be what this registry holds (an experiment
    without `run`): a broken entry is refused where it is written, not found
    missing later in the middle of a run.
    """

    def __init__(self, kind: str, check: Optional[Callable[[str, T], None]] = None):
        self.kind = kind
        self._check = check
        self._items: Dict[str, T] = {}

    def register(self, name: str, obj: T = None):
        """Register `obj` under `name`; usable as a decorator when obj is None."""
        def add(o: T) -> T:
            if name in self._items:
                raise ConfigError(f"duplicate {self.kind} name {name!r}: it is already registered")
            if self._check is not None:
                self._check(name, o)
            self._items[name] = o
            return o

        if obj is None:
            return add
        return add(obj)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
