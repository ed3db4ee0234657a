"""Nested cross-validation (``evaluation:``): the estimate in run.json and the summary, its
reproducibility (run to run, n_jobs 1 and 2, read back from the study), the main search left
unchanged, outer folds that keep groups whole and time in order, and what is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from hptune.fingerprint import fingerprint_parts
from hptune.folds import build_outer_folds, cv_folds, outer_part
from hptune.storage import journal_storage
from hptune.trials import STUDY_NESTED_FOLD
from hptune.validate import Overrides, load_experiment
from tests.conftest import run_cli

SPEC = """
name: nested
seed: 3
data: {{dataset: iris}}
model: {{estimator: svc}}
search_space:
  C: {{type: float, low: 0.01, high: 100, log: true}}
  gamma: {{type: float, low: 1.0e-4, high: 10, log: true}}
cv: {{folds: 3}}
strategy: {{kind: bayesian, n_trials: {n_trials}}}
{extra}
"""
EVALUATION = "evaluation: {nested_folds: 3, nested_trials: 4}"


def _spec(write_spec, n_trials: int = 5, extra: str = EVALUATION, name: str = "experiment.yaml") -> Path:
    return write_spec(SPEC.format(n_trials=n_trials, extra=extra), name)


def _run(spec: Path, out: Path, *options: str) -> dict:
    result = run_cli("run", spec, "--out", out, *options)
    assert result.exit_code == 0, result
    return json.loads((out / "run.json").read_text())


def _study(out: Path, name: str = "nested") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(out / "study.journal"))


def _same_folds(a: dict, b: dict) -> None:
    for key in ("scores", "inner_cv_scores", "params", "inner_trials", "mean", "std"):
        assert a[key] == b[key], key


def test_run_json_and_the_summary_hold_the_estimate_beside_the_tuned_cv_score(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("run", _spec(write_spec), "--out", out)
    assert result.exit_code == 0, result
    run = json.loads((out / "run.json").read_text())
    nested = run["nested"]
    assert (nested["folds"], nested["trials_per_fold"], nested["outer_split"], nested["metric"]) == (3, 4, "stratified", "accuracy")
    assert len(nested["scores"]) == len(nested["inner_cv_scores"]) == len(nested["params"]) == 3
    assert all(0 <= s <= 1 for s in nested["scores"]) and nested["inner_trials"] == [4, 4, 4]
    assert nested["mean"] == pytest.approx(np.mean(nested["scores"]), abs=1e-12)
    assert nested["std"] == pytest.approx(np.std(nested["scores"]), abs=1e-12)
    assert nested["tuned_cv_score"] == run["cv_score"]
    assert nested["optimism"] == pytest.approx(run["cv_score"] - nested["mean"], abs=1e-12)
    assert nested["error"] is None and nested["reused_folds"] == 0 and "refine_trials_per_fold" not in nested
    assert set(nested["params"][0]) == {"C", "gamma"}
    assert "nested" in run["timings_seconds"]
    # Each outer fold is kept in the study, with the key of what it was computed from.
    stored = [_study(out).user_attrs[f"{STUDY_NESTED_FOLD}{i}"] for i in range(3)]
    assert [s["score"] for s in stored] == nested["scores"]
    assert result.stderr.count("nested cv: outer fold") == 3
    line = next(x for x in result.stdout.splitlines() if x.startswith("nested cv accuracy:"))
    assert line == (f"nested cv accuracy: {nested['mean']:.4f} ± {nested['std']:.4f} (3 outer folds × 4 trials); "
                    f"tuned cv {run['cv_score']:.4f}: optimism {nested['optimism']:+.4f}")


def test_the_same_file_gives_the_same_estimate_and_a_rerun_reads_it_back(write_spec, tmp_path: Path) -> None:
    spec = _spec(write_spec)
    first, second = _run(spec, tmp_path / "a"), _run(spec, tmp_path / "b")
    _same_folds(first["nested"], second["nested"])
    again = run_cli("run", spec, "--out", tmp_path / "a")
    assert again.exit_code == 0, again
    rerun = json.loads((tmp_path / "a" / "run.json").read_text())["nested"]
    _same_folds(first["nested"], rerun)
    assert rerun["reused_folds"] == 3
    assert again.stderr.count("kept in the study from an earlier run") == 3
    # finalize writes the same estimate, from the study.
    finalized = run_cli("finalize", spec, "--out", tmp_path / "a")
    assert finalized.exit_code == 0, finalized
    _same_folds(first["nested"], json.loads((tmp_path / "a" / "run.json").read_text())["nested"])


def test_n_jobs_1_and_2_give_identical_nested_scores(write_spec, tmp_path: Path) -> None:
    spec = _spec(write_spec)
    one = _run(spec, tmp_path / "one", "--n-jobs", "1")
    two = _run(spec, tmp_path / "two", "--n-jobs", "2")
    _same_folds(one["nested"], two["nested"])  # the main search at n_jobs 2 may differ; the outer folds may not


def test_the_main_search_and_its_outputs_do_not_change_with_evaluation(write_spec, tmp_path: Path) -> None:
    timing = ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time", "duration"]
    plain = _run(_spec(write_spec, extra="", name="plain.yaml"), tmp_path / "plain")
    nested = _run(_spec(write_spec), tmp_path / "nested")
    assert "nested" not in plain
    tables = [pd.read_csv(tmp_path / name / "trials.csv").drop(columns=timing) for name in ("plain", "nested")]
    pd.testing.assert_frame_equal(*tables)
    assert len(tables[0]) == 5
    assert (tmp_path / "plain" / "best.yaml").read_bytes() == (tmp_path / "nested" / "best.yaml").read_bytes()
    # Not part of the fingerprint: adding evaluation to a finished study continues it.
    assert plain["experiment"]["fingerprint"] == nested["experiment"]["fingerprint"]
    added = _run(_spec(write_spec), tmp_path / "plain")
    assert added["trials"]["complete"] == 5
    _same_folds(added["nested"], nested["nested"])


def test_a_nested_evaluation_cut_short_resumes_at_the_folds_not_done(write_spec, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from hptune import nested as nested_mod

    spec, out = _spec(write_spec), tmp_path / "out"
    clean = _run(spec, tmp_path / "clean")["nested"]
    real, calls = nested_mod.run_outer_fold, []

    def interrupted_at_the_second_fold(job, index):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, index)

    monkeypatch.setattr(nested_mod, "run_outer_fold", interrupted_at_the_second_fold)
    cut = run_cli("run", spec, "--out", out)
    assert cut.exit_code == 130, cut
    assert "interrupted during the nested evaluation: 1 of 3 outer folds are kept" in cut.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and "nested" not in run and run["model_refitted"]
    monkeypatch.setattr(nested_mod, "run_outer_fold", real)
    resumed = _run(spec, out)
    assert resumed["status"] == "complete" and resumed["trials"]["complete"] == 5
    assert resumed["nested"]["reused_folds"] == 1
    _same_folds(resumed["nested"], clean)


def test_a_change_to_what_the_folds_depend_on_computes_them_again(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _run(_spec(write_spec), out)["nested"]
    more = _run(_spec(write_spec, extra="evaluation: {nested_folds: 3, nested_trials: 6}"), out)["nested"]
    assert first["reused_folds"] == 0 and first["inner_trials"] == [4, 4, 4]
    assert more["reused_folds"] == 0 and more["inner_trials"] == [6, 6, 6] and more["trials_per_fold"] == 6


def test_inner_searches_keep_the_refine_stage_in_proportion(write_spec, tmp_path: Path) -> None:
    # refine: 3 trials after 6; nested_trials 4 -> 2 refine trials per outer fold.
    extra = f"refine: {{n_trials: 3}}\n{EVALUATION}"
    nested = _run(_spec(write_spec, n_trials=6, extra=extra), tmp_path / "out")["nested"]
    assert nested["refine_trials_per_fold"] == 2 and nested["inner_trials"] == [6, 6, 6]


def test_a_grid_runs_its_points_in_each_inner_search(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SPEC.format(n_trials=4, extra="evaluation: {nested_folds: 3}").replace(
        "C: {type: float, low: 0.01, high: 100, log: true}", "C: [0.1, 1, 10]").replace(
        "gamma: {type: float, low: 1.0e-4, high: 10, log: true}", "gamma: [0.01, 0.1]").replace(
        "kind: bayesian, n_trials: 4", "kind: grid"))
    nested = _run(spec, tmp_path / "out")["nested"]
    assert nested["trials_per_fold"] == 6 and nested["inner_trials"] == [6, 6, 6]


def test_a_failed_outer_fold_is_reported_and_the_run_still_succeeds(write_spec, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from hptune import nested as nested_mod

    real = nested_mod.run_outer_fold

    def failing(job, index):
        fold = real(job, index)
        if index == 1:
            fold.score, fold.error = None, "no inner trial completed"
        return fold

    monkeypatch.setattr(nested_mod, "run_outer_fold", failing)
    out = tmp_path / "out"
    result = run_cli("run", _spec(write_spec), "--out", out)
    assert result.exit_code == 0, result
    nested = json.loads((out / "run.json").read_text())["nested"]
    assert nested["error"] == "outer fold 1: no inner trial completed" and nested["mean"] is None
    assert nested["scores"][1] is None and nested["optimism"] is None
    assert "nested cv accuracy: not estimated: outer fold 1: no inner trial completed" in result.stdout
    assert f"{STUDY_NESTED_FOLD}1" not in _study(out).user_attrs  # a failure is not kept: the next run tries again


@pytest.fixture
def grouped_csv(tmp_path: Path) -> Path:
    """Messy data with groups: uneven group sizes, text categoricals, missing values."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 15, size=40)
    groups = np.repeat([f"customer-{i:02d}" for i in range(len(sizes))], sizes)
    n = len(groups)
    frame = pd.DataFrame({
        "customer": groups,
        "amount": np.where(rng.random(n) < 0.1, np.nan, rng.normal(100, 30, n)),
        "channel": rng.choice(["web", "shop", "phone", None], n),
        "tenure": rng.integers(0, 60, n),
    })
    frame["churned"] = np.where((frame["tenure"] < 20) ^ (rng.random(n) < 0.2), "yes", "no")
    path = tmp_path / "customers.csv"
    frame.sample(frac=1, random_state=1).to_csv(path, index=False)
    return path


GROUPED = """
name: grouped
data: {{path: {path}, target: churned, groups: customer}}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.01, high: 100, log: true}}
cv: {{folds: 3}}
strategy: {{n_trials: 3}}
evaluation: {{nested_folds: 4, nested_trials: 3}}
"""


def test_group_outer_folds_never_split_a_group(grouped_csv: Path, write_spec, tmp_path: Path) -> None:
    spec = write_spec(GROUPED.format(path=grouped_csv))
    exp = load_experiment(spec, (), Overrides(out=str(tmp_path / "out")))
    split = exp.split
    outer = build_outer_folds(exp.spec, exp.task, split)
    assert len(outer) == 4
    tested = np.sort(np.concatenate([test for _, test in outer]))
    assert (tested == np.arange(len(split.y_train))).all()  # every training row is tested once
    for train, test in outer:
        assert not set(split.groups_train.iloc[train]) & set(split.groups_train.iloc[test])
        part = outer_part(split, train, test)
        for inner_train, inner_test in cv_folds(exp.spec, exp.task, part):  # and the inner folds keep them too
            assert not set(part.groups_train.iloc[inner_train]) & set(part.groups_train.iloc[inner_test])
    # The same file through the CLI: preprocessing, text and missing values included.
    nested = _run(spec, tmp_path / "out")["nested"]
    assert nested["outer_split"] == "group" and nested["error"] is None and len(nested["scores"]) == 4


def test_time_series_outer_folds_train_on_the_past(write_spec, tmp_path: Path) -> None:
    spec = write_spec("""
        name: ordered
        data: {dataset: diabetes}
        model: {estimator: ridge}
        search_space:
          alpha: {type: float, low: 0.001, high: 100, log: true}
        cv: {kind: timeseries, folds: 3}
        evaluation: {nested_folds: 3, nested_trials: 3}
        """)
    exp = load_experiment(spec, (), Overrides(out=str(tmp_path / "out")))
    for train, test in build_outer_folds(exp.spec, exp.task, exp.split):
        assert train.max() < test.min()
        assert (train == np.arange(len(train))).all()  # the inner search sees only the past
    assert _run(spec, tmp_path / "out", "--n-trials", "3")["nested"]["outer_split"] == "timeseries"


def test_evaluation_is_not_part_of_the_fingerprint(write_spec, tmp_path: Path) -> None:
    plain = load_experiment(_spec(write_spec, extra="", name="a.yaml"), (), Overrides())
    nested = load_experiment(_spec(write_spec, name="b.yaml"), (), Overrides())
    assert fingerprint_parts(plain) == fingerprint_parts(nested)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("evaluation: {nested_folds: 1, nested_trials: 0}", [
            "experiment.yaml:10:14: evaluation.nested_folds: must be >= 2, found 1",
            "experiment.yaml:10:31: evaluation.nested_trials: must be >= 1, found 0",
        ]),
        ("evaluation: {nested_folds: 50}", [
            "experiment.yaml:10:14: evaluation.nested_folds: 50 outer stratified folds need a class with at least 50 "
            "rows in the training part, found at most 40",
        ]),
    ],
    ids=["values", "too-many-folds"],
)
def test_invalid_values_fail_with_exit_code_2_at_their_line(extra: str, expected: list[str], write_spec,
                                                           tmp_path: Path) -> None:
    spec = _spec(write_spec, extra=extra)
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2, result
    lines = [line.replace(str(spec), "experiment.yaml") for line in result.stderr.splitlines()]
    assert lines[:-1] == expected
    assert not (tmp_path / "out").exists()


def test_auto_choosing_a_grid_warns_that_nested_trials_is_not_used(write_spec) -> None:
    spec = write_spec(SPEC.format(n_trials=10, extra=EVALUATION).replace(
        "C: {type: float, low: 0.01, high: 100, log: true}", "C: [0.1, 1, 10]").replace(
        "gamma: {type: float, low: 1.0e-4, high: 10, log: true}", "gamma: [0.01, 0.1]").replace(
        "kind: bayesian", "kind: auto"))
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    assert ("evaluation.nested_trials: warning: not used: strategy.kind: auto chose grid, so each inner search "
            "runs the main search's 6 grid points") in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_outer_folds_running_in_worker_processes(write_spec, tmp_path: Path) -> None:
    spec = write_spec("""
        name: slow-nested
        data: {dataset: digits}
        model: {estimator: svc}
        search_space:
          C: {type: float, low: 0.01, high: 100, log: true}
        cv: {folds: 3}
        strategy: {n_trials: 2, n_jobs: 2, pruner: none}
        evaluation: {nested_folds: 2, nested_trials: 200}
        """)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if len(_study(out, "slow-nested").get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2:
                break
        except (KeyError, ValueError, FileNotFoundError):  # not created yet
            pass
        time.sleep(0.1)
    time.sleep(5)  # the refit, then the outer folds start (200 trials each: minutes)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 15  # the workers were stopped, not waited for
    assert "interrupted during the nested evaluation: 0 of 2 outer folds are kept" in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted" and run["trials"]["complete"] == 2


def test_inner_searches_judge_objectives_and_constraints_as_the_main_search_does(write_spec, tmp_path: Path) -> None:
    # Each inner search optimises both objectives, keeps the limit (it needs train scores and
    # model sizes), and its best is the one `select` picks; the outer score is the main metric's.
    spec = write_spec("""
name: nested-tradeoff
seed: 0
data: {dataset: breast_cancer, test_size: 0.2}
model: {estimator: random_forest, params: {n_jobs: 1}}
search_space:
  n_estimators: {type: int, low: 2, high: 30, log: true}
  max_depth: {type: int, low: 1, high: 6}
objectives: [roc_auc, model_mb]
select: knee
constraints: {max_overfit_gap: 0.05}
cv: {folds: 3}
strategy: {kind: bayesian, n_trials: 6}
evaluation: {nested_folds: 2, nested_trials: 4}
""")
    nested = _run(spec, tmp_path / "out")["nested"]
    assert nested["error"] is None and nested["metric"] == "roc_auc"
    assert len(nested["scores"]) == 2 and all(0.5 < score <= 1 for score in nested["scores"])
    assert all(0.5 < score <= 1 for score in nested["inner_cv_scores"])
