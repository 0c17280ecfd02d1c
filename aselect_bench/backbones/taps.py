"""Tap names: ``"blocks.{i}.{component}"`` -> (block index, component), validated in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aselect_bench.errors import UserError

#: The one tap table: each component readable inside a block, in the order the block computes it, and the
#: stage after which it exists (0: norm1, 1: q/k/v, 2: attention, 3: MLP and the block output). A block run
#: for a set of components stops after the latest stage they need.
COMPONENT_STAGE = {
    "norm1": 0, "query": 1, "key": 1, "value": 1,
    "attn": 2, "attn_gated": 2, "mlp": 3, "mlp_gated": 3, "out": 3,
}
COMPONENTS = tuple(COMPONENT_STAGE)

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
