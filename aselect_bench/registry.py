"""Named factories of one kind (timestep selectors, searches): a decorator registers them, a lookup builds them."""

from __future__ import annotations

from collections.abc import Callable

from aselect_bench.errors import UserError


class Registry(dict):
    """``{name: factory}`` in registration order; ``kind`` names what it holds in messages ("timestep selector")."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        """Class or factory decorator: ``@registry.register("name")``; a name registered twice is a bug."""

        def add(factory):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = factory
            return factory

        return add

    def factory(self, name: str) -> Callable:
        """The factory of ``name``; an unknown name is one :class:`UserError` listing the registered ones."""
        if name not in self:
            raise UserError(f"unknown {self.kind} {name!r}; use one of {', '.join(self)}")
        return self[name]
