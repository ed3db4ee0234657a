"""The final refit: made on a freed core while the last trials run, and never of a stale best."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import optuna
import yaml

from hptune.crossval import fit_pipeline, prepare
from hptune.execution import Search
from hptune.finish import refit_best, summarise, write_outputs
from hptune.refit import refit_trial
from hptune.stopping import Stop, StopReason, StopRules
from hptune.study import open_study
from hptune.validate import Overrides, load_experiment
from tests.conftest import run_cli


def test_two_workers_refit_the_best_while_the_last_trial_runs(write_spec, tmp_path: Path) -> None:
    # One value to sample: every trial scores the same, so trial 0 is the best as soon as it
    # completes; 3 trials on 2 workers leave one worker out of budget while the other runs
    # the third trial, and the parent refits trial 0 meanwhile.
    spec = write_spec(
        """
        name: refit-early
        data: {dataset: digits}
        model: {estimator: svc}
        search_space:
          C: [10.0]
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 3, n_jobs: 2}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    run = json.loads((out / "run.json").read_text())
    assert run["model_refitted"] is True and run["refit_during_search"] is True
    assert yaml.safe_load((out / "best.yaml").read_text())["trial"] == 0

    # The model shipped is the one a refit after the search would have made.
    exp = load_experiment(spec, (), Overrides(out=str(out)))
    setup = prepare(exp)
    split = setup.split
    fresh = fit_pipeline(setup.ctx, {"C": 10.0}, split.X_train, split.y_train)
    shipped = joblib.load(out / "model.joblib")
    np.testing.assert_array_equal(shipped.predict(split.X_test), fresh.predict(split.X_test))
    assert run["test_score"] == float(np.mean(fresh.predict(split.X_test) == split.y_test))


def test_a_refit_of_a_trial_that_is_no_longer_the_best_is_not_shipped(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: refit-stale
        data: {dataset: iris}
        model: {estimator: decision_tree}
        search_space:
          max_depth: {type: int, low: 1, high: 4}
          ccp_alpha: {type: float, low: 0.0, high: 0.2}
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 6}
        """
    )
    exp = load_experiment(spec, (), Overrides(out=str(tmp_path / "out")))
    setup = prepare(exp)
    handle = open_study(exp)
    Search(handle, setup, StopRules.for_experiment(exp)).run()
    trials = handle.trials()
    best = handle.goal.best_trial(trials)
    stale = next(t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.params != best.params)
    # As if the parent had refitted `stale` while it was the best, and a later trial beat it.
    early = refit_trial(exp, setup, stale, threads=1, during_search=True)

    rules = StopRules.for_experiment(exp)
    summary = summarise(exp, handle, setup)
    fitted = refit_best(exp, setup, summary, early, refit=True)
    write_outputs(exp, handle, setup, summary, Stop(StopReason.BUDGET), rules, fitted, datetime.now(timezone.utc), {})
    run = json.loads((exp.output_dir / "run.json").read_text())
    assert run["best_trial"] == best.number and run["refit_during_search"] is False
    shipped = joblib.load(exp.output_dir / "model.joblib").named_steps["model"]
    assert shipped.max_depth == best.params["max_depth"] and shipped.ccp_alpha == best.params["ccp_alpha"]


def test_a_refit_with_capped_threads_ships_the_configured_n_jobs_and_the_same_model(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: refit-threads
        data: {dataset: iris}
        model: {estimator: random_forest, params: {n_estimators: 20, n_jobs: -1}}
        search_space:
          max_depth: {type: int, low: 2, high: 4}
        cv: {folds: 3}
        """
    )
    exp = load_experiment(spec, (), Overrides(out=str(tmp_path / "out")))
    setup = prepare(exp)
    split = setup.split
    capped = fit_pipeline(setup.ctx, {"max_depth": 3}, split.X_train, split.y_train, threads=1)
    free = fit_pipeline(setup.ctx, {"max_depth": 3}, split.X_train, split.y_train)
    assert capped.named_steps["model"].n_jobs == -1
    # The same trees (predict_proba itself sums them in threads, in no fixed order).
    for ours, theirs in zip(capped.named_steps["model"].estimators_, free.named_steps["model"].estimators_, strict=True):
        np.testing.assert_array_equal(ours.tree_.threshold, theirs.tree_.threshold)
        np.testing.assert_array_equal(ours.tree_.value, theirs.tree_.value)


def test_warnings_of_the_refit_are_kept_in_run_json_and_summarised(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        """
        name: refit-warns
        data: {dataset: iris, test_size: 0}
        model: {estimator: logistic_regression, preprocessing: none, params: {max_iter: 3}}
        search_space:
          C: {type: float, low: 1, high: 10}
        cv: {folds: 3}
        strategy: {kind: random, n_trials: 2}
        """
    )
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "-q")
    assert result.exit_code == 0, result
    (warning,) = json.loads((out / "run.json").read_text())["refit_warnings"]
    assert warning.startswith("ConvergenceWarning: lbfgs failed to converge") and "\n" not in warning
    assert "refit warning: ConvergenceWarning: lbfgs failed to converge" in result.stdout
    assert "ConvergenceWarning" not in result.stderr  # not printed raw, many lines long
