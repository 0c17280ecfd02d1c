"""The timestep-selector interface and its registry: one place to add a selector.

The shipped selectors register themselves when their modules are imported; the package
(:mod:`aselect_bench.selectors`) imports them all, and any import of this module imports the package first.

A selector turns one scan (the features of a set of images at every candidate timestep) into a timestep.
Most read the *calibration* images that A-SelecT's scan already pays for; some average several noise draws
or read a *labelled* held-out set (never the reported split), and count those extra forwards as their own
cost. A selector without features (a fixed rule) needs no scan at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aselect_bench.errors import UserError
from aselect_bench.hfr import DEFAULTS, HFRSettings
from aselect_bench.registry import Registry


@dataclass(frozen=True)
class Labels:
    """The labels of the labelled held-out set: class ids ``[M]`` (classification) or masks ``[M, H, W]``
    aligned with the images (segmentation, 255 = ignore), and the number of classes."""

    targets: torch.Tensor
    num_classes: int

    @property
    def dense(self) -> bool:
        """True for segmentation masks, False for one class id per image."""
        return self.targets.ndim == 3


class Selector:
    """One timestep-selection rule. Subclasses set the class attributes and override :meth:`score` (a
    statistic of one candidate's features) or :meth:`choose` (a rule).

    Attributes:
        name: the registry name.
        uses_labels: reads :class:`Labels` of the labelled held-out set.
        images: ``"calibration"`` (the scan's unlabelled images), ``"labelled"`` (the held-out set) or
            ``None`` (no features: a rule).
        noise_draws: features are averaged over this many noise draws before :meth:`score` (draw 0 is the
            scan's own).
        per_image: :meth:`score` returns one value per image ``[N]`` whose mean is the score (so the choice's
            bootstrap support over images can be reported and the scan can be sharded over processes).
        task: ``"fgvc"`` or ``"ade20k"`` when the selector only applies to one task, else ``None``.
        expected: names no single timestep; it is scored by its expectation over the grid (the random rule).
        min_images: the fewest images its score is defined on (fewer: refused before the scan).
        settings: what configures it, recorded with every choice.
    """

    name: str = ""
    uses_labels: bool = False
    images: str | None = "calibration"
    noise_draws: int = 1
    per_image: bool = False
    task: str | None = None
    expected: bool = False
    min_images: int = 1

    @property
    def settings(self) -> dict:
        return {}

    def why_undefined(self, num_images: int) -> str:
        """Why no candidate got a defined score on ``num_images`` images (said when the selector cannot pick)."""
        return "the score came out NaN or infinite"

    @property
    def needs_scan(self) -> bool:
        return self.images is not None

    def score(self, features: torch.Tensor, labels: Labels | None = None) -> torch.Tensor | float:
        """Higher is better. ``features [N, C, h, w]`` of one candidate (float32) -> a float, or ``[N]`` when
        :attr:`per_image`."""
        raise NotImplementedError

    def choose(self, candidates: Sequence[int], scores: dict[int, float] | None) -> int | None:
        """The chosen candidate: the first maximum of ``scores`` in candidate order (``None``: no single
        timestep, e.g. the random rule, scored by its expectation). Only called with the candidates whose score
        is defined (:func:`~aselect_bench.selectors.scan.finalize`)."""
        return max(candidates, key=lambda t: scores[t])

    def applies_to(self, task: str) -> bool:
        return self.task is None or self.task == task


#: name -> factory(hfr settings) -> Selector
_REGISTRY = Registry("timestep selector")
#: Class or factory decorator: ``@register("rankme")``; the factory is called with the HFR settings.
register = _REGISTRY.register


def selector_names(task: str | None = None) -> list[str]:
    """Every registered selector (that applies to ``task``): ``hfr`` first, then the other HFR variants, the
    rules, the label-free statistics and the label-using proxies, each group in registration order."""
    built = {n: build_selector(n) for n in _REGISTRY}

    def group(name: str) -> int:
        s = built[name]
        return 0 if name == "hfr" else 1 if s.per_image else 2 if not s.needs_scan else 4 if s.uses_labels else 3

    order = sorted(range(len(built)), key=lambda k: (group(list(built)[k]), k))
    return [n for n in (list(built)[k] for k in order) if task is None or built[n].applies_to(task)]


def build_selector(name: str, hfr_settings: HFRSettings | None = None) -> Selector:
    """The selector ``name``; ``hfr_settings`` (:class:`~aselect_bench.hfr.HFRSettings`) configures ``hfr``."""
    selector = _REGISTRY.factory(name)(hfr_settings or DEFAULTS)
    selector.name = name
    return selector


def check_enough_images(selector: Selector, num_images: int, option: str) -> None:
    """Refuse, before the scan, a selector whose score is undefined on ``num_images`` images, naming ``option``
    (the setting that gives more images)."""
    if selector.needs_scan and num_images < selector.min_images:
        raise UserError(f"selector {selector.name!r} cannot score on {num_images} images (it needs at least "
                        f"{selector.min_images}: {selector.why_undefined(num_images)}); raise {option}")


def training_selector(name: str, hfr_settings: HFRSettings | None = None) -> Selector:
    """The selector ``name`` for choosing the training timestep: registered, and naming one timestep (the random
    rule does not), else one :class:`UserError`. Called wherever a preset, a callback or ``select`` is set up."""
    selector = build_selector(name, hfr_settings)
    if selector.expected:
        raise UserError(f"selector {name!r} names no single timestep (compare scores it by its expectation over the "
                        f"grid), so it cannot choose the training timestep: use another selector")
    return selector
