"""Optuna's TPE sampler over the candidate index with its median pruner, asked and told through Optuna's own
ask/tell API against the curves (Optuna's defaults; ``n_trials = len(candidates)``)."""

from __future__ import annotations

import contextlib

from aselect_bench.searches.base import Budget, Context, Search, register

#: Optuna is stochastic: every sampler seed is one run; rows report the mean and spread over them.
SAMPLER_SEEDS = tuple(range(10))


@contextlib.contextmanager
def quiet_optuna():
    """Optuna's logging at WARNING inside the block (one line per trial otherwise), restored after."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(level)


@register("optuna-tpe")
class OptunaTPE(Search):
    """``TPESampler(seed)`` + ``MedianPruner()`` maximising val; each trial suggests a candidate index, reports
    val after every epoch (``trial.report(val, epoch)``) and stops when ``trial.should_prune()``; the pick is
    the best completed trial's candidate. A candidate asked for again continues its run (costs nothing new)."""

    sampler_seeds = SAMPLER_SEEDS

    @property
    def settings(self) -> dict:
        return {"sampler": "TPESampler (defaults)", "pruner": "MedianPruner (defaults)", "n_trials": "len(candidates)",
                "sampler_seeds": list(self.sampler_seeds)}

    def choose(self, budget: Budget, context: Context, seed) -> int:
        ts = budget.candidates
        with quiet_optuna() as optuna:
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                        pruner=optuna.pruners.MedianPruner())
            for _ in range(len(ts)):
                trial = study.ask()
                self._trial(study, trial, budget, ts[trial.suggest_int("index", 0, len(ts) - 1)], optuna)
            return ts[study.best_trial.params["index"]]

    @staticmethod
    def _trial(study, trial, budget: Budget, t: int, optuna) -> None:
        """One trial at ``t``: epoch by epoch, told pruned or complete."""
        for epoch in range(1, budget.max_epochs + 1):
            val = budget.val(t, epoch)
            trial.report(val, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return
        study.tell(trial, val)
