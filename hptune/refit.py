"""The refit: the best trial's parameters fitted on all the training data, scored on the
held-out split. Made once after the search, or on a core a finished worker freed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hptune.crossval import Setup, fit_pipeline
from hptune.objective import distinct_warnings
from hptune.validate import ValidatedExperiment


@dataclass
class Refit:
    """The best trial's parameters fitted on all training data, and its held-out scores."""

    trial: int
    model: Any
    test_scores: dict[str, float]
    seconds: float
    warnings: list[str] = field(default_factory=list)  # distinct, one line each
    during_search: bool = False  # made on a freed core while the last trials ran


def refit_trial(
    exp: ValidatedExperiment, setup: Setup, trial: Any, threads: int | None = None, during_search: bool = False
) -> Refit:
    """Fit ``trial``'s parameters on the whole training split and score the held-out split."""
    import warnings

    from hptune.space import decode_params

    clock = time.perf_counter()
    split = setup.split
    params = decode_params(exp.spec.search_space, trial.params)
    # Kept for run.json and the summary, as a trial's are, instead of raw on stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit_pipeline(setup.ctx, params, split.X_train, split.y_train, threads=threads)
        test_scores: dict[str, float] = {}
        if split.X_test is not None:
            test_scores = {m: float(v) for m, v in setup.ctx.scorer(model, split.X_test, split.y_test).items()}
    seconds = time.perf_counter() - clock
    return Refit(trial.number, model, test_scores, seconds, distinct_warnings(caught), during_search)
