"""output.mlflow through the real CLI, against a real MLflow tracking store (SQLite) in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, run_cli
from tests.test_early_stopping import PRUNABLE

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow

TREE = """
name: tree-iris
data: {{dataset: iris}}
model: {{estimator: decision_tree, params: {{random_state: 0}}}}
search_space:
  min_samples_split: [1, 2, 4, 8]
extra_metrics: [f1_macro]
cv: {{folds: 3}}
strategy: {{kind: grid}}
output:
  mlflow: {{tracking_uri: "{uri}", artifact_location: "{artifacts}"}}
"""

RANDOM = """
name: random-iris
data: {{dataset: iris}}
model: {{estimator: decision_tree}}
search_space:
  max_depth: {{type: int, low: 1, high: 8}}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: 3, pruner: none}}
output:
  mlflow: {{tracking_uri: "{uri}", artifact_location: "{artifacts}", experiment: tuning}}
"""


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    return {"uri": f"sqlite:///{tmp_path}/mlflow.db", "artifacts": str(tmp_path / "artifacts")}


def _nested(client, run) -> list:
    return client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'", max_results=1000
    )


def test_a_run_is_logged_with_its_trials_scores_files_and_model(write_spec, tmp_path: Path, store) -> None:
    spec = write_spec(TREE.format(**store))
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert record["mlflow"]["error"] is None
    assert f"mlflow: run {record['mlflow']['run_id']}" in result.stdout

    client = mlflow.MlflowClient(store["uri"])
    parent = client.get_run(record["mlflow"]["run_id"])
    assert client.get_experiment(parent.info.experiment_id).name == "tree-iris"  # default: the file's name
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"random_state": "0", "min_samples_split": str(_best(out)["min_samples_split"])}
    metrics = parent.data.metrics
    assert metrics["cv_score"] == pytest.approx(record["cv_score"])
    assert metrics["cv_std"] == pytest.approx(record["cv_std"])
    assert metrics["train_score"] == pytest.approx(record["train_score"])
    assert metrics["test_score"] == pytest.approx(record["test_score"])
    assert metrics["test_f1_macro"] == pytest.approx(record["test_scores"]["f1_macro"])
    tags = parent.data.tags
    assert tags["hptune.study"] == "tree-iris"
    assert tags["hptune.fingerprint"] == record["experiment"]["fingerprint"]
    assert tags["hptune.status"] == "complete" and tags["hptune.best_trial"] == str(record["best_trial"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"experiment.yaml", "best.yaml", "trials.csv", "run.json"} <= artifacts
    logged_record = json.loads(Path(client.download_artifacts(parent.info.run_id, "run.json", str(tmp_path))).read_text())
    assert logged_record["mlflow"]["run_id"] == parent.info.run_id

    # The model: an MLflow sklearn model that predicts as model.joblib does.
    import joblib
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data
    mlflow.set_tracking_uri(store["uri"])
    try:
        logged = mlflow.sklearn.load_model(f"models:/{record['mlflow']['model_id']}")
    finally:
        mlflow.set_tracking_uri(None)
    assert (logged.predict(X) == joblib.load(out / "model.joblib").predict(X)).all()

    # One nested run per trial, with its parameters, fold means and state; the failed one too.
    table = pd.read_csv(out / "trials.csv").set_index("number")
    nested = {int(run.data.tags["hptune.trial"]): run for run in _nested(client, parent)}
    assert sorted(nested) == sorted(table.index)
    for number, run in nested.items():
        row = table.loc[number]
        assert run.data.params == {"min_samples_split": str(row["param_min_samples_split"])}
        assert run.data.tags["hptune.state"] == row["state"]
        if row["state"] == "FAIL":
            assert run.info.status == "FAILED" and "min_samples_split" in run.data.tags["hptune.error"]
            assert "mean_test_accuracy" not in run.data.metrics
            continue
        assert run.info.status == "FINISHED"
        for column in ("mean_test_accuracy", "mean_train_accuracy", "mean_test_f1_macro", "mean_fit_time"):
            assert run.data.metrics[column] == pytest.approx(row[column], abs=1e-12)
        assert run.data.metrics["duration"] == pytest.approx(row["duration"], abs=1e-3)
    assert (table["state"] == "FAIL").sum() == 1


def _best(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "best.yaml").read_text())["params"]


def test_a_skops_model_is_logged_in_mlflows_skops_format(write_spec, tmp_path: Path, store) -> None:
    from sklearn.datasets import load_iris

    from hptune.modelfile import load

    out = tmp_path / "out"
    result = run_cli("run", write_spec(TREE.format(**store)), "--out", out, "--set", "output.model_format=skops")
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert record["mlflow"]["error"] is None and record["model_format"] == "skops"
    uri = f"models:/{record['mlflow']['model_id']}"
    mlflow.set_tracking_uri(store["uri"])
    try:
        flavor = mlflow.models.get_model_info(uri).flavors["sklearn"]
        logged = mlflow.sklearn.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)
    assert flavor["serialization_format"] == "skops"
    assert flavor["skops_trusted_types"] == ["numpy.dtype", "sklearn.tree._tree.Tree"]
    X = load_iris(as_frame=True).data
    assert (logged.predict(X) == load(out / "model.skops").predict(X)).all()


def test_resuming_logs_into_the_same_run_and_adds_only_new_trials(write_spec, tmp_path: Path, store) -> None:
    spec = write_spec(RANDOM.format(**store))
    out = tmp_path / "out"
    client = mlflow.MlflowClient(store["uri"])

    assert run_cli("run", spec, "--out", out).exit_code == 0
    first = json.loads((out / "run.json").read_text())["mlflow"]
    assert first["nested_runs_logged"] == 3

    again = run_cli("run", spec, "--out", out)  # a finished study: nothing new
    assert again.exit_code == 0, again
    second = json.loads((out / "run.json").read_text())["mlflow"]
    assert second["run_id"] == first["run_id"] and second["nested_runs_logged"] == 0
    assert second["model_id"] == first["model_id"]  # the same model.joblib is not logged twice

    finalized = run_cli("finalize", spec, "--out", out)  # finalize logs into the same run too
    assert finalized.exit_code == 0, finalized
    record = json.loads((out / "run.json").read_text())["mlflow"]
    assert record["run_id"] == first["run_id"] and record["nested_runs_logged"] == 0

    more = run_cli("run", spec, "--out", out, "--n-trials", "6", "--n-jobs", "2")
    assert more.exit_code == 0, more
    third = json.loads((out / "run.json").read_text())["mlflow"]
    assert third["run_id"] == first["run_id"] and third["nested_runs_logged"] == 3

    experiment = client.get_experiment_by_name("tuning")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert [run.info.run_id for run in parents] == [first["run_id"]]
    numbers = sorted(int(run.data.tags["hptune.trial"]) for run in runs if run not in parents)
    assert numbers == list(range(6))


def test_a_tracking_server_that_is_down_leaves_the_outputs_and_the_exit_code(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as free:  # a port nothing listens on: the server is down
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's default retries for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    spec = write_spec(RANDOM.format(uri=f"http://127.0.0.1:{port}", artifacts=tmp_path / "a"))
    out = tmp_path / "out"
    result = run_cli("run", spec, "--out", out)
    assert result.exit_code == 0, result
    record = json.loads((out / "run.json").read_text())
    assert record["mlflow"]["run_id"] is None and record["mlflow"]["error"]
    warning = [line for line in result.stdout.splitlines() if line.startswith("warning: mlflow: not logged:")]
    assert len(warning) == 1 and warning[0].endswith("(the outputs are written)")
    assert {"trials.csv", "best.yaml", "model.joblib"} <= {p.name for p in out.iterdir()}


def test_without_the_extra_a_run_is_refused_in_one_line_before_training(write_spec, tmp_path: Path, store) -> None:
    shadow = tmp_path / "shadow" / "mlflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'mlflow'\")\n")
    spec = write_spec(RANDOM.format(**store))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out)], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "error: output.mlflow needs MLflow, which cannot be imported (No module named 'mlflow'): "
        "pip install 'hptune[mlflow]'"
    ]
    assert not (out / "trials.csv").exists()


def test_a_pruned_trial_is_a_killed_nested_run_with_the_means_of_the_folds_it_ran(
    write_spec, tmp_path: Path, store
) -> None:
    # The prunable SVC of test_early_stopping: gamma across six decades, so the median pruner stops some.
    mlflow_section = 'output:\n  mlflow: {{tracking_uri: "{uri}", artifact_location: "{artifacts}"}}\n'.format(**store)
    spec = write_spec(PRUNABLE.format(kind="random", n_trials=16, extra="") + mlflow_section)
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out).exit_code == 0
    table = pd.read_csv(out / "trials.csv").set_index("number")
    pruned = table[table["state"] == "PRUNED"]
    assert len(pruned) >= 1
    client = mlflow.MlflowClient(store["uri"])
    parent = client.get_run(json.loads((out / "run.json").read_text())["mlflow"]["run_id"])
    nested = {int(run.data.tags["hptune.trial"]): run for run in _nested(client, parent)}
    assert len(nested) == 16
    for number, row in pruned.iterrows():
        run = nested[number]
        assert run.info.status == "KILLED" and run.data.tags["hptune.state"] == "PRUNED"
        assert run.data.metrics["mean_test_accuracy"] == pytest.approx(row["mean_test_accuracy"], abs=1e-12)


def test_adding_mlflow_to_a_finished_study_resumes_it_and_logs_its_trials(write_spec, tmp_path: Path, store) -> None:
    text = RANDOM.format(**store)
    out = tmp_path / "out"
    without = write_spec(text.split("output:")[0], name="without.yaml")
    assert run_cli("run", without, "--out", out).exit_code == 0
    result = run_cli("run", write_spec(text), "--out", out)  # output settings are not in the fingerprint
    assert result.exit_code == 0, result
    assert "resuming: 3 of 3 trials done" in result.stderr + result.stdout
    assert json.loads((out / "run.json").read_text())["mlflow"]["nested_runs_logged"] == 3
