"""Tap names: ``"{stack}.{i}.{component}"`` -> (stack, block index, component), validated in one place.

A stack is a sequence of blocks run in order: every family has ``blocks``; Flux runs its single-stream
``single_blocks`` after them. ``parse_tap`` takes the model's stacks as ``{stack: number of blocks}`` (or, for
the common one-stack case, just the number of ``blocks``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from aselect_bench.errors import UserError

#: Stages inside a block, in the order the block computes them. A block run for a set of components stops
#: after the latest stage they need.
NORM, QKV, ATTN, CROSS, MLP = range(5)
#: The one tap table: each component readable inside a block and the stage after which it exists
#: (``cross``, the cross-attention output of PixArt and Sana, sits between self-attention and the MLP).
COMPONENT_STAGE = {
    "norm1": NORM, "query": QKV, "key": QKV, "value": QKV,
    "attn": ATTN, "attn_gated": ATTN, "cross": CROSS, "mlp": MLP, "mlp_gated": MLP, "out": MLP,
}
#: The components of a DiT block (DiT, SD3, Flux); ``CROSS_COMPONENTS`` adds ``cross`` (PixArt, Sana).
COMPONENTS = tuple(c for c in COMPONENT_STAGE if c != "cross")
CROSS_COMPONENTS = tuple(COMPONENT_STAGE)
#: The first stack, which every family has.
BLOCKS = "blocks"

_TAP_RE = re.compile(r"^([a-z_]+)\.(\d+)\.([a-z_0-9]+)$")


@dataclass(frozen=True, order=True)
class Tap:
    block: int
    component: str
    stack: str = BLOCKS

    def __str__(self) -> str:
        return f"{self.stack}.{self.block}.{self.component}"


def stage_of(components) -> int:
    """The latest stage that ``components`` need (:data:`MLP`, the whole block, when there are none)."""
    return max((COMPONENT_STAGE[c] for c in components), default=MLP)


def _stacks(num_blocks: int | Mapping[str, int]) -> dict[str, int]:
    return dict(num_blocks) if isinstance(num_blocks, Mapping) else {BLOCKS: num_blocks}


def parse_tap(name: str, num_blocks: int | Mapping[str, int], components: tuple[str, ...] = COMPONENTS) -> Tap:
    """Parse and validate one tap name against a model with ``num_blocks`` blocks (``{stack: count}``)."""
    stacks = _stacks(num_blocks)
    match = _TAP_RE.match(str(name).strip())
    if match is None or match.group(1) not in stacks:
        forms = " or ".join(f"'{s}.<i>.<component>'" for s in stacks)
        ranges = ", ".join(f"{s}: i in 0..{n - 1}" for s, n in stacks.items())
        raise UserError(
            f"bad tap {name!r}: write taps as {forms} ({ranges}) with component one of {', '.join(components)} "
            f"(e.g. 'blocks.9.query')"
        )
    stack, block, component = match.group(1), int(match.group(2)), match.group(3)
    count = stacks[stack]
    if not 0 <= block < count:
        kind = "block" if stack == BLOCKS else stack.rstrip("s").replace("_", " ")
        raise UserError(
            f"tap {name!r} is outside the model: {kind} {block} does not exist, this model has "
            f"{count} {kind}s (0..{count - 1})"
        )
    if component not in components:
        raise UserError(f"tap {name!r} has an unknown component {component!r}; allowed: {', '.join(components)}")
    return Tap(block, component, stack)


def parse_taps(names, num_blocks: int | Mapping[str, int], components: tuple[str, ...] = COMPONENTS) -> list[Tap]:
    """Parse a list of tap names (a single string is accepted as a one-element list)."""
    if isinstance(names, str):
        names = [names]
    taps = [parse_tap(n, num_blocks, components) for n in names]
    if not taps:
        raise UserError("no taps given: pass at least one tap such as 'blocks.9.query'")
    return taps


def grid_taps(blocks, components=COMPONENTS, stack: str = BLOCKS) -> list[str]:
    """Every (block, component) pair of ``stack`` as tap names, block-major."""
    return [str(Tap(b, c, stack)) for b in blocks for c in components]
