"""The search interface, its registry, and the curves a search reads: one place to add a search.

A *search* spends training budget to choose a timestep (``docs/searches.md``). It never trains by itself: it
asks a :class:`CurveSource` for the history of the training at a candidate ``t`` up to some epoch, one decision
at a time, and reads only the choosing split's metric (``"val"``) off the rows. It ends with one full training
(``max_epochs``) at its pick.

Sources:

- :class:`ReplaySource` reads the histories a comparison recorded (one source per seed): nothing trains;
- a live source (:mod:`aselect_bench.searches.live`) trains what is asked, continuing a run from its last
  epoch, and returns the same rows; a live run and its replay must agree (pick and epochs).

Cost (resume-based, as ASHA): every candidate is charged its *largest* observed epoch, so continuing a run costs
only the new epochs, and asking again for epochs already seen costs nothing. ``seconds`` and ``forwards`` are
read off the rows at those epochs (rows are cumulative). The final full training at the pick is charged the same
way (it is the exhaustive sweep's run there). ``cost_fraction`` is the share of the exhaustive search's epochs:
``epochs / (len(candidates) * max_epochs)``.

Add a search: subclass :class:`Search`, implement :meth:`Search.choose` (read curves through the
:class:`Budget`, return a candidate, or raise :class:`CannotPick`), and register it with ``@register("name")``
in a module this package imports (``aselect_bench/searches/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aselect_bench.registry import Registry

#: The entries of a history row, the only ones a search ever sees.
ROW_KEYS = ("epoch", "val", "seconds", "forwards")


class CannotPick(Exception):
    """Raised by a search (or a source) that cannot choose here; its message says why (one line)."""


@runtime_checkable
class CurveSource(Protocol):
    """What a search reads: the learning curve of the training at each candidate.

    ``observe(t, epochs)`` -> the history rows of epochs ``1..epochs`` of the training at ``t``, each
    ``{"epoch", "val", "seconds", "forwards"}`` with cumulative ``seconds``/``forwards`` (a live source trains
    further when needed; rows may hold more keys, e.g. ``"test"``, which the :class:`Budget` strips). It raises
    :class:`CannotPick` when a curve is missing.
    """

    candidates: list[int]
    max_epochs: int

    def observe(self, t: int, epochs: int) -> list[dict]: ...


def recorded_sweeps(result: dict) -> dict[int, dict[int, dict]]:
    """``{repeat: {t: row}}`` as a comparison's JSON records them (``exhaustive.per_timestep[t]``, or its
    ``repeats[i]`` with several seeds); the per-image outcomes are not in the JSON."""
    per_t, seeds = result["exhaustive"]["per_timestep"], result.get("seeds", 1)
    return {r: {int(t): row["repeats"][r] if seeds > 1 else row for t, row in per_t.items()} for r in range(seeds)}


class ReplaySource:
    """A :data:`CurveSource` over recorded histories ``{t: [row per epoch, epoch 1 first]}``.

    ``max_epochs``: the full training's length, by default the length of the histories (all the same length).
    A candidate without a history makes every search on this source say it cannot pick.
    """

    def __init__(self, histories: Mapping[int, Sequence[dict] | None], max_epochs: int | None = None):
        self.candidates = [int(t) for t in histories]
        self.histories = {int(t): list(h) if h else None for t, h in histories.items()}
        missing = [t for t, h in self.histories.items() if not h]
        lengths = {len(h) for h in self.histories.values() if h}
        self.missing = (f"no learning curve recorded at t={missing[0]} (the comparison predates histories: re-run "
                        f"it)" if missing else None)
        if not missing and len(lengths) != 1 and max_epochs is None:
            self.missing = f"the recorded learning curves differ in length ({sorted(lengths)} epochs)"
        self.max_epochs = int(max_epochs if max_epochs is not None else max(lengths, default=0))

    @classmethod
    def from_sweep(cls, sweep: Mapping[int, dict], max_epochs: int | None = None) -> ReplaySource:
        """From one seed's exhaustive sweep ``{t: row}`` (each stored piece's ``"history"``)."""
        return cls({int(t): row.get("history") for t, row in sweep.items()}, max_epochs)

    @classmethod
    def from_comparison(cls, result: dict, repeat: int = 0) -> ReplaySource:
        """From a comparison's JSON: ``exhaustive.per_timestep[t].history``, or ``.repeats[repeat].history``
        when the comparison has several seeds."""
        return cls.from_sweep(recorded_sweeps(result)[repeat])

    def observe(self, t: int, epochs: int) -> list[dict]:
        if self.missing:
            raise CannotPick(self.missing)
        history = self.histories[int(t)]
        if not 1 <= epochs <= len(history):
            raise ValueError(f"t={t}: asked for {epochs} epochs, the history has {len(history)}")
        return history[:epochs]


class Budget:
    """A source as a search sees it: rows reduced to :data:`ROW_KEYS` (never the reported split), every
    observation charged (resume-based: a candidate's largest observed epoch)."""

    def __init__(self, source: CurveSource):
        self.source = source
        self.candidates = list(source.candidates)
        self.max_epochs = int(source.max_epochs)
        self.observed: dict[int, int] = {}  # t -> largest epoch observed
        self._rows: dict[int, list[dict]] = {}

    def observe(self, t: int, epochs: int) -> list[dict]:
        """History rows of epochs ``1..epochs`` at ``t`` (``epochs`` capped at ``max_epochs``)."""
        return [dict(row) for row in self._seen(t, epochs)]

    def _seen(self, t: int, epochs: int) -> list[dict]:
        """The reduced rows of epochs ``1..epochs`` at ``t``, observing (and charging) what is new."""
        epochs = max(1, min(int(epochs), self.max_epochs))
        if t not in self._rows or epochs > self.observed[t]:
            rows = self.source.observe(t, epochs)
            known = self._rows.get(t, [])
            self._rows[t] = known + [{k: row[k] for k in ROW_KEYS} for row in rows[len(known):]]
            self.observed[t] = epochs
        return self._rows[t][:epochs]

    def val(self, t: int, epoch: int) -> float:
        """The choosing split's metric at ``t`` after ``epoch`` epochs."""
        return self._seen(t, epoch)[-1]["val"]

    def best(self, ts: Sequence[int], epoch: int) -> int:
        """The candidate of ``ts`` with the best val after ``epoch`` epochs (the first in ``ts`` on ties)."""
        return max(ts, key=lambda t: self.val(t, epoch))

    def top(self, ts: Sequence[int], epoch: int, k: int) -> list[int]:
        """The ``k`` best of ``ts`` by val after ``epoch`` epochs, best first (``ts`` order on ties)."""
        return sorted(ts, key=lambda t: -self.val(t, epoch))[:k]

    def cost(self) -> dict:
        """``{"epochs", "seconds", "forwards", "observed": {t: largest epoch}}`` over everything observed."""
        rows = [self._rows[t][e - 1] for t, e in self.observed.items()]
        return {"epochs": sum(self.observed.values()), "seconds": sum(r["seconds"] for r in rows),
                "forwards": sum(r["forwards"] for r in rows), "observed": dict(sorted(self.observed.items()))}


@dataclass
class Context:
    """What a search may know besides the curves: ``other_bests``, the exhaustive best timestep of each other
    comparison in the same results folder (``{label: t}``; the ``transfer`` search reads it)."""

    other_bests: dict[str, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """One run of a search on one source: its pick (``None``: it cannot pick, ``reason`` says why) and its cost.

    ``epochs`` sums every partial training and the final one; ``cost_fraction`` is ``epochs`` over the
    exhaustive search's ``len(candidates) * max_epochs``; ``sampler_seed`` is set for stochastic searches."""

    timestep: int | None
    epochs: int = 0
    seconds: float = 0.0
    forwards: int = 0
    cost_fraction: float | None = None
    observed: dict[int, int] = field(default_factory=dict)
    sampler_seed: int | None = None
    reason: str | None = None

    def to_json(self) -> dict:
        return {"timestep": self.timestep, "epochs": self.epochs, "seconds": self.seconds,
                "forwards": self.forwards, "cost_fraction": self.cost_fraction,
                "observed": {str(t): e for t, e in self.observed.items()},
                **({"sampler_seed": self.sampler_seed} if self.sampler_seed is not None else {}),
                **({"reason": self.reason} if self.reason else {})}


class Search:
    """One search strategy. Subclasses set :attr:`name` (by :func:`register`) and implement :meth:`choose`.

    Attributes:
        sampler_seeds: the seeds of a stochastic search (each one run; reported as the mean and spread), or
            ``(None,)`` for a deterministic one.
        settings: what configures it (published defaults), recorded with every row.
    """

    name: str = ""
    sampler_seeds: tuple = (None,)

    @property
    def settings(self) -> dict:
        return {}

    def choose(self, budget: Budget, context: Context, seed: int | None) -> int:
        """The pick, read from ``budget`` (val only); raise :class:`CannotPick` to say it cannot choose."""
        raise NotImplementedError

    def run(self, source: CurveSource, context: Context | None = None) -> list[Outcome]:
        """One :class:`Outcome` per sampler seed: the pick, then its full training charged."""
        return [self.run_once(source, context or Context(), seed) for seed in self.sampler_seeds]

    def run_once(self, source: CurveSource, context: Context, seed: int | None) -> Outcome:
        budget = Budget(source)
        try:
            if getattr(source, "missing", None):  # no curves to read (pieces stored before curves): every search
                raise CannotPick(source.missing)  # says so, before a strategy reads the empty source's max_epochs
            pick = self.choose(budget, context, seed)
            budget.observe(pick, budget.max_epochs)  # the full training at the pick (the sweep's run there)
        except CannotPick as why:
            return Outcome(None, sampler_seed=seed, reason=str(why))
        cost = budget.cost()
        exhaustive = len(budget.candidates) * budget.max_epochs
        return Outcome(pick, cost["epochs"], cost["seconds"], cost["forwards"], cost["epochs"] / exhaustive,
                       cost["observed"], seed)


#: name -> factory() -> Search
_REGISTRY = Registry("search")
#: Class or factory decorator: ``@register("successive-halving")``.
register = _REGISTRY.register


def search_names() -> list[str]:
    """Every registered search, in registration order."""
    return list(_REGISTRY)


def build_search(name: str) -> Search:
    """The search ``name`` (a :class:`UserError` naming the registered ones otherwise)."""
    search = _REGISTRY.factory(name)()
    search.name = name
    return search
