"""`run --baseline best.yaml [--require-improvement]`: the committed config scored first, in the
same study, on today's folds; the improvement with its paired standard error; exit 3 unless the
new best beats it beyond one standard error. Through the real CLI, on real data and studies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from hptune import baseline as baseline_mod
from hptune.trials import ATTR_BASELINE, ATTR_INTERRUPTED, requeue
from tests.conftest import run_cli

SPEC = """
name: based
seed: 0
data: {{dataset: iris, test_size: 0.2}}
model: {{estimator: logistic_regression, params: {{max_iter: 500}}}}
search_space:
  C: {{type: float, low: 0.001, high: 100, log: true}}
cv: {{kind: stratified, folds: 5}}
strategy: {{kind: bayesian, n_trials: {n_trials}, pruner: {pruner}}}
"""


def _spec(write_spec, n_trials: int = 6, pruner: str = "none") -> Path:
    return write_spec(SPEC.format(n_trials=n_trials, pruner=pruner))


def _best_yaml(tmp_path: Path, name: str, **params: object) -> Path:
    path = tmp_path / name
    path.write_text("params:\n" + "".join(f"  {key}: {value}\n" for key, value in params.items()))
    return path


def _corrected_se(a: list[float], b: list[float]) -> float:
    """The paired standard error, written out here (not hptune's code): the variance of the
    fold differences times 1/k + 1/(k-1) (Nadeau and Bengio)."""
    d = [y - x for x, y in zip(a, b, strict=True)]
    k, mean = len(d), sum(d) / len(d)
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (k - 1) * (1 / k + 1 / (k - 1)))


def _folds(table: pd.DataFrame, number: int) -> list[float]:
    row = table[table["number"] == number].iloc[0]
    return [float(row[f"split{k}_test_accuracy"]) for k in range(5)]


def test_the_baseline_runs_first_outside_the_budget_and_the_improvement_is_paired(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    weak = _best_yaml(tmp_path, "weak.yaml", C=0.001, max_iter=500)
    result = run_cli("run", _spec(write_spec), "--out", out, "--baseline", weak, "--require-improvement")
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 7  # the 6 trials of the budget, and the baseline's on top
    assert table.loc[table["number"] == 0, "param_C"].item() == 0.001  # run first
    assert table["baseline"].tolist() == [True] + [False] * 6
    record = json.loads((out / "run.json").read_text())
    base = record["baseline"]
    assert base["file"] == str(weak) and base["trial"] == 0 and base["state"] == "complete"
    assert base["best_trial"] == record["best_trial"] != 0
    assert base["cv_score"] == pytest.approx(table.loc[table["number"] == 0, "mean_test_accuracy"].item())
    assert base["improvement"] == pytest.approx(record["cv_score"] - base["cv_score"])
    assert base["standard_error"] == pytest.approx(_corrected_se(_folds(table, 0), _folds(table, record["best_trial"])))
    assert base["improvement"] > base["standard_error"] and base["beyond_one_standard_error"] is True
    best_c = yaml.safe_load((out / "best.yaml").read_text())["params"]["C"]
    assert base["changes"] == [{"param": "C", "baseline": 0.001, "best": best_c}]  # max_iter is fixed, unchanged
    assert record["gates"] == [{"gate": "require_improvement", "threshold": base["standard_error"],
                                "value": base["improvement"], "passed": True,
                                "detail": f"improvement {base['improvement']:+.4f} > one standard error "
                                          f"{base['standard_error']:.4f}"}]
    assert f"beats the baseline {weak} (trial 0, cv {base['cv_score']:.4f})" in result.stdout
    assert "changed from the baseline: C 0.001 ->" in result.stdout
    page = (out / "report.html").read_text()  # the report's summary table
    assert "6 of 6 trials and the baseline&#x27;s" in page and f"{weak} (trial 0, complete): cv" in page
    assert "gate require_improvement</th><td>passed (improvement +" in page
    # `show` reads it back from the files alone.
    shown = run_cli("show", out, "--json")
    assert json.loads(shown.stdout)["baseline"] == base and json.loads(shown.stdout)["gates"] == record["gates"]
    assert f"baseline {weak} (trial 0, complete): cv {base['cv_score']:.4f}" in run_cli("show", out).stdout
    # Resumed with the same baseline: it is found, not run again; the budget is the search's.
    again = run_cli("run", _spec(write_spec, n_trials=8), "--out", out, "--baseline", weak)
    assert again.exit_code == 0, again
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 9 and (table["param_C"] == 0.001).sum() == 1


def test_no_improvement_beyond_the_noise_exits_3_after_writing_everything(write_spec, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert run_cli("run", _spec(write_spec), "--out", first).exit_code == 0
    committed = tmp_path / "committed.yaml"
    committed.write_text((first / "best.yaml").read_text())  # what a team keeps in git
    out = tmp_path / "out"
    result = run_cli("run", _spec(write_spec), "--out", out, "--baseline", committed, "--require-improvement", "--json")
    assert result.exit_code == 3, result
    document = json.loads(result.stdout)
    assert document["exit_code"] == 3 and document["status"] == "complete"
    base = document["baseline"]
    # The same seed finds the same best, whose twin is the baseline's trial: the baseline is
    # ranked first (the earlier of two equal scores), so nothing beat it.
    assert base["trial"] == 0 and base["best_trial"] == 0 and base["improvement"] == 0.0
    assert document["gates"][0]["passed"] is False
    assert "is still the best" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("gate missed: require_improvement: improvement +0.0000 <=")
    assert {"trials.csv", "best.yaml", "model.joblib"} <= set(json.loads((out / "run.json").read_text())["files"])


def test_the_baseline_runs_when_the_budget_is_spent_and_is_never_pruned(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = _spec(write_spec, n_trials=8, pruner="median")
    assert run_cli("run", spec, "--out", out).exit_code == 0
    weak = _best_yaml(tmp_path, "weak.yaml", C=0.001)
    # The budget is spent: the baseline still runs, and a median pruner that would stop so weak
    # a trial after its first fold lets it finish (its five folds are the yardstick).
    result = run_cli("run", spec, "--out", out, "--baseline", weak)
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    row = table[table["number"] == 8].iloc[0]
    assert len(table) == 9 and row["param_C"] == 0.001 and row["state"] == "COMPLETE"
    # The same point as a warm start, with budget left: an ordinary trial, pruned by the same pruner.
    again = run_cli("run", spec, "--out", out, "--start-from", weak, "--n-trials", "9")
    assert again.exit_code == 0, again
    table = pd.read_csv(out / "trials.csv")
    assert table[table["number"] == 9].iloc[0]["state"] == "PRUNED"


def test_a_baseline_that_fails_today_is_beaten_by_any_best_that_works(write_spec, tmp_path: Path) -> None:
    spec = write_spec("""
name: tree
seed: 0
data: {dataset: iris, test_size: 0}
model: {estimator: decision_tree}
search_space:
  min_samples_split: {type: int, low: 1, high: 8}
cv: {folds: 3}
strategy: {kind: grid}
""")
    broken = _best_yaml(tmp_path, "broken.yaml", min_samples_split=1)  # an int must be >= 2
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "--baseline", broken, "--require-improvement")
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert record["baseline"]["state"] == "failed" and "min_samples_split" in record["baseline"]["error"]
    assert record["gates"][0]["passed"] is True and "failed on today's data" in record["gates"][0]["detail"]
    table = pd.read_csv(out / "trials.csv")
    # Beside the whole grid (8 points, one of which fails the same way): the grid is not cut short.
    assert len(table) == 9 and sorted(table["param_min_samples_split"].tolist()) == [1, 1, 2, 3, 4, 5, 6, 7, 8]


def test_the_github_summary_lists_the_baseline_and_what_changed(write_spec, tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    weak = _best_yaml(tmp_path, "weak.yaml", C=0.001)
    result = run_cli("run", _spec(write_spec), "--out", tmp_path / "out", "--baseline", weak, "--require-improvement")
    assert result.exit_code == 0, result
    text = summary.read_text()
    assert "- ✅ passed: `require_improvement` (improvement +" in text
    assert "**Baseline**" in text and "| parameter | baseline | best |" in text and "| C | 0.001 |" in text


def test_baseline_mistakes_are_refused_before_any_trial(write_spec, tmp_path: Path) -> None:
    spec = _spec(write_spec)
    outside = _best_yaml(tmp_path, "outside.yaml", C=1000, gamma=0.1)
    result = run_cli("run", spec, "--out", tmp_path / "out", "--baseline", outside)
    assert result.exit_code == 2, result
    assert f"{outside}:2:" in result.stderr and "1000 is outside the range 0.001 .. 100" in result.stderr
    assert f"{outside}:3:" in result.stderr and "'gamma' is not in today's search_space" in result.stderr
    assert not (tmp_path / "out").exists()
    lonely = run_cli("run", spec, "--require-improvement")
    assert lonely.exit_code == 2 and "--require-improvement" in lonely.stderr and "needs --baseline" in lonely.stderr
    worker = run_cli("run", spec, "--worker", "--baseline", _best_yaml(tmp_path, "ok.yaml", C=1.0))
    assert worker.exit_code == 2 and "--baseline" in worker.stderr


def test_finalize_reports_the_baseline_it_finds_in_the_study(write_spec, tmp_path: Path) -> None:
    out = tmp_path / "out"
    weak = _best_yaml(tmp_path, "weak.yaml", C=0.001)
    assert run_cli("run", _spec(write_spec), "--out", out, "--baseline", weak).exit_code == 0
    ran = json.loads((out / "run.json").read_text())["baseline"]
    result = run_cli("finalize", _spec(write_spec), "--out", out, "--baseline", weak, "--require-improvement")
    assert result.exit_code == 0, result
    assert json.loads((out / "run.json").read_text())["baseline"] == {**ran, "required": True}
    # A baseline the study never ran: finalize runs no trial, so nothing shows an improvement.
    other = _best_yaml(tmp_path, "other.yaml", C=2.0)
    result = run_cli("finalize", _spec(write_spec), "--out", out, "--baseline", other, "--require-improvement")
    assert result.exit_code == 3 and "the baseline did not run (not run)" in result.stderr


def test_a_baseline_cut_short_is_never_queued_for_a_worker_to_pop() -> None:
    """Ctrl-C or a dead worker re-queues a trial's parameters (trials.requeue), but not the
    baseline's: queued, any process could pop it, and whatever waits ahead of it would run
    first. It no longer counts, so the next `run --baseline` runs it."""
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr(ATTR_BASELINE, "baseline:0")
    trial.set_user_attr(ATTR_INTERRUPTED, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    requeue(study, study.get_trials(deepcopy=False)[0], "interrupted")
    assert len(study.get_trials()) == 1
    assert baseline_mod.trials_of(study.get_trials(), "baseline:0") == []


KNN = """
name: knn
seed: 0
data: {{dataset: iris, test_size: 0.2}}
model: {{estimator: knn}}
search_space:
  n_neighbors: {{type: int, low: 1, high: {high}}}
{extra_space}
metric: accuracy
cv: {cv}
strategy: {strategy}
{extra}
"""


def _knn(write_spec, strategy: str = "{kind: random, n_trials: 4}", extra: str = "", extra_space: str = "",
         cv: str = "{kind: stratified, folds: 5}", high: int = 30) -> Path:
    return write_spec(KNN.format(strategy=strategy, extra=extra, extra_space=extra_space, cv=cv, high=high))


def test_the_stop_rules_and_failure_limits_do_not_see_the_baseline(write_spec, tmp_path: Path) -> None:
    # A committed config that fails today (96 training rows per fold, 100 neighbours) is not
    # one of the search's failures: max_failures 0 does not stop the search.
    failing = _best_yaml(tmp_path, "failing.yaml", n_neighbors=100)
    # The grid's first four points (1 to 4 neighbours) all work.
    strict = _knn(write_spec, strategy="{kind: grid, n_trials: 4, max_failures: 0}", high=100)
    result = run_cli("run", strict, "--out", tmp_path / "a", "--baseline", failing, "--require-improvement")
    assert result.exit_code == 0, result
    table = pd.read_csv(tmp_path / "a" / "trials.csv")
    assert (table["state"] == "COMPLETE").sum() == 4 and table.loc[table["baseline"], "state"].tolist() == ["FAIL"]
    # A committed config that reaches stop.target does not end the search before it starts.
    good = _best_yaml(tmp_path, "good.yaml", n_neighbors=7)
    spec = _knn(write_spec, strategy="{kind: random, n_trials: 6}", extra="stop: {target: 0.9}")
    result = run_cli("run", spec, "--out", tmp_path / "b", "--baseline", good)
    assert result.exit_code == 0, result
    record = json.loads((tmp_path / "b" / "run.json").read_text())
    baseline_trial = record["baseline"]["trial"]
    assert record["baseline"]["cv_score"] >= 0.9 and record["stop_reason"] == "target"
    assert f"trial {baseline_trial}'s" not in record["stop_detail"]  # a search trial reached it
    assert len(pd.read_csv(tmp_path / "b" / "trials.csv")) >= 2


def test_a_resumed_grid_runs_only_the_baseline_not_the_points_waiting_in_the_queue(write_spec, tmp_path: Path) -> None:
    spec = _knn(write_spec, strategy="{kind: grid}", extra="stop: {target: 0.9}")
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out).exit_code == 0
    before = len(pd.read_csv(out / "trials.csv"))
    assert before < 30  # the target stopped the grid with points still queued
    result = run_cli("run", spec, "--out", out, "--baseline", _best_yaml(tmp_path, "good.yaml", n_neighbors=7))
    assert result.exit_code == 0, result
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == before + 1 and table["baseline"].sum() == 1


def test_a_parameter_the_baseline_does_not_set_runs_with_the_models_default(write_spec, tmp_path: Path) -> None:
    spec = _knn(write_spec, extra_space="  weights: [uniform, distance]\n  p: [1, 2]")
    partial = _best_yaml(tmp_path, "partial.yaml", n_neighbors=7)  # committed before weights and p were tuned
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "--baseline", partial)
    assert result.exit_code == 0, result
    assert f"{partial}:1:1:" in result.stderr and "does not set 'weights', which today's space tunes: it runs with " \
           "the model's default 'uniform', as the config did" in result.stderr
    table = pd.read_csv(out / "trials.csv")
    row = table[table["baseline"]].iloc[0]
    assert (row["param_n_neighbors"], row["param_weights"], row["param_p"]) == (7, "uniform", 2)
    assert json.loads((out / "run.json").read_text())["baseline"]["params"] == {"n_neighbors": 7, "weights": "uniform", "p": 2}
    # A default today's space cannot hold is an error at the file's `params:` line.
    narrow = _knn(write_spec, extra_space="  p: [1, 3]")
    refused = run_cli("run", narrow, "--out", tmp_path / "refused", "--baseline", partial)
    assert refused.exit_code == 2 and f"{partial}:1:1: params: does not set 'p'" in refused.stderr
    assert "2 is not one of the choices [1, 3]" in refused.stderr


def test_retry_failed_runs_a_failed_baseline_again(write_spec, tmp_path: Path) -> None:
    spec, out = _knn(write_spec, strategy="{kind: grid, n_trials: 4}", high=100), tmp_path / "out"
    failing = _best_yaml(tmp_path, "failing.yaml", n_neighbors=100)
    assert run_cli("run", spec, "--out", out, "--baseline", failing).exit_code == 0
    assert run_cli("run", spec, "--out", out, "--baseline", failing).exit_code == 0  # found: not run again
    assert pd.read_csv(out / "trials.csv")["baseline"].sum() == 1
    assert run_cli("run", spec, "--out", out, "--baseline", failing, "--retry-failed").exit_code == 0
    table = pd.read_csv(out / "trials.csv")
    assert table.loc[table["baseline"], "state"].tolist() == ["FAIL", "FAIL"]  # ran again, failed again


def test_with_repeated_folds_the_standard_error_uses_the_folds_test_train_ratio(write_spec, tmp_path: Path) -> None:
    spec = _knn(write_spec, cv="{kind: stratified, folds: 5, repeats: 3}")
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out, "--baseline", _best_yaml(tmp_path, "wide.yaml", n_neighbors=30))
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert record["data"]["test_train_ratio"] == pytest.approx(1 / 4)  # 24 test rows to 96 train rows
    table, base = pd.read_csv(out / "trials.csv"), record["baseline"]
    scores = {n: [float(table.loc[table["number"] == n, f"split{k}_test_accuracy"].item()) for k in range(15)]
              for n in (base["trial"], base["best_trial"])}
    d = [b - a for a, b in zip(scores[base["trial"]], scores[base["best_trial"]], strict=True)]
    mean = sum(d) / 15
    # 15 scores of 5 folds repeated 3 times: 1/15 + 1/4, not 1/15 + 1/14 (15 "folds").
    expected = math.sqrt(sum((x - mean) ** 2 for x in d) / 14 * (1 / 15 + 1 / 4))
    assert base["standard_error"] == pytest.approx(expected)
