"""Tap names: ``"blocks.{i}.{component}"`` -> (block index, component), validated in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aselect_bench.errors import UserError

#: Components readable inside a DiT block, in the order the block computes them.
COMPONENTS = ("norm1", "query", "key", "value", "attn", "attn_gated", "mlp", "mlp_gated", "out")

_TAP_RE = re.compile(r"^blocks\.(\d+)\.([a-z_0-9]+)$")


@dataclass(frozen=True, order=True)
class Tap:
    block: int
    component: str

    def __str__(self) -> str:
        return f"blocks.{self.block}.{self.component}"


def parse_tap(name: str, num_blocks: int, components: tuple[str, ...] = COMPONENTS) -> Tap:
    """Parse and validate one tap name against a model with ``num_blocks`` blocks."""
    match = _TAP_RE.match(str(name).strip())
    if match is None:
        raise UserError(
            f"bad tap {name!r}: write taps as 'blocks.<i>.<component>' with i in 0..{num_blocks - 1} "
            f"and component one of {', '.join(components)} (e.g. 'blocks.9.query')"
        )
    block, component = int(match.group(1)), match.group(2)
    if not 0 <= block < num_blocks:
        raise UserError(
            f"tap {name!r} is outside the model: block {block} does not exist, this model has "
            f"{num_blocks} blocks (0..{num_blocks - 1})"
        )
    if component not in components:
        raise UserError(f"tap {name!r} has an unknown component {component!r}; allowed: {', '.join(components)}")
    return Tap(block, component)


def parse_taps(names, num_blocks: int, components: tuple[str, ...] = COMPONENTS) -> list[Tap]:
    """Parse a list of tap names (a single string is accepted as a one-element list)."""
    if isinstance(names, str):
        names = [names]
    taps = [parse_tap(n, num_blocks, components) for n in names]
    if not taps:
        raise UserError("no taps given: pass at least one tap such as 'blocks.9.query'")
    return taps


def grid_taps(blocks, components=COMPONENTS) -> list[str]:
    """Every (block, component) pair as tap names, block-major."""
    return [str(Tap(b, c)) for b in blocks for c in components]
