"""Fixed rules: the choices a skeptic tries before any statistic. They need no scan."""

from __future__ import annotations

from collections.abc import Sequence

from aselect_bench.selectors.base import Selector, register


class FixedRule(Selector):
    """Always the candidate nearest to ``target`` (ties: the cleaner one)."""

    images = None

    def __init__(self, target: int):
        self.target = target

    @property
    def settings(self) -> dict:
        return {"target": self.target}

    def choose(self, candidates: Sequence[int], scores=None) -> int:
        return min(candidates, key=lambda t: (abs(t - self.target), t))


@register("t0")
def _cleanest(settings) -> FixedRule:
    """The cleanest candidate (t = 0 on the default grid): no noise at all for rectified flow, 1% for DDPM."""
    return FixedRule(0)


@register("fixed-100")
def _fixed_100(settings) -> FixedRule:
    """t = 100: small but non-zero noise, where diffusion-feature work (DDAE, diffssl) finds linear probes best."""
    return FixedRule(100)


@register("fixed-150")
def _fixed_150(settings) -> FixedRule:
    """t = 150: the authors' released CUB run (github.com/ChangyuLiu2022/A-SelecT extracts at scheduler index
    850, i.e. paper t = 150)."""
    return FixedRule(150)


class RandomRule(Selector):
    """A candidate drawn uniformly at random, scored by its expectation over the grid (no sampling): its
    regret is the mean regret of all candidates."""

    images = None
    expected = True

    def choose(self, candidates: Sequence[int], scores=None) -> None:
        return None


register("random")(lambda settings: RandomRule())
