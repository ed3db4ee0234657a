"""`hptune init`: starter experiments that validate and run as they are; through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hptune.starters import DEFAULT_MODEL, SPACES, TASK_OF
from tests.conftest import run_cli


def _init_and_run(tmp_path: Path, *args: str, trials: int = 2) -> dict:
    spec = tmp_path / "experiment.yaml"
    made = run_cli("init", *args, "-o", spec)
    assert made.exit_code == 0, made
    assert run_cli("validate", spec).exit_code == 0
    ran = run_cli("run", spec, "--out", tmp_path / "out", "--n-trials", str(trials))
    assert ran.exit_code == 0, ran
    return yaml.safe_load(spec.read_text())


def test_the_default_starter_on_a_csv_with_text_labels_runs(tmp_path: Path, penguins_csv: Path) -> None:
    written = _init_and_run(tmp_path, "--data", str(penguins_csv), "--target", "species")
    assert written["model"]["estimator"] == DEFAULT_MODEL and written["task"] == "classification"
    assert written["metric"] == "f1_macro"  # three species
    assert (tmp_path / written["data"]["path"]).resolve() == penguins_csv.resolve()  # relative to the file
    text = (tmp_path / "experiment.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=hptune.schema.json\n")
    assert json.loads((tmp_path / "hptune.schema.json").read_text())["title"] == "hptune experiment"


def test_a_binary_target_gets_roc_auc_and_an_id_column_is_pointed_out(tmp_path: Path) -> None:
    frame = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(300)], "x": range(300),
                          "left": ["yes" if i % 3 == 0 else "no" for i in range(300)]})
    frame.to_csv(tmp_path / "churn.csv", index=False)
    written = _init_and_run(tmp_path, "--data", str(tmp_path / "churn.csv"), "--target", "left", "--model", "logistic_regression")
    assert written["metric"] == "roc_auc"
    assert "# validate says: column 'customer_id' looks like an identifier" in (tmp_path / "experiment.yaml").read_text()


def test_refusals_are_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "experiment.yaml"
    spec.write_text("mine\n")
    assert run_cli("init", "--dataset", "iris", "-o", spec).exit_code == 2 and spec.read_text() == "mine\n"
    wrong = run_cli("init", "--dataset", "diabetes", "--model", "svc", "-o", tmp_path / "x.yaml")
    assert wrong.exit_code == 2 and "svc is for classification, but the data's task is regression" in wrong.stderr
    unknown = run_cli("init", "--dataset", "iris", "--model", "bert", "-o", tmp_path / "y.yaml")
    assert unknown.exit_code == 2 and "no starter space for 'bert'" in unknown.stderr
    neither = run_cli("init", "-o", tmp_path / "z.yaml")
    assert neither.exit_code == 2 and "--dataset NAME or --data FILE --target COLUMN" in neither.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SPACES))
def test_every_model_s_starter_validates_and_runs(model: str, tmp_path: Path) -> None:
    dataset = "diabetes" if TASK_OF.get(model) == "regression" else "breast_cancer"
    written = _init_and_run(tmp_path, "--dataset", dataset, "--model", model, trials=1)
    assert written["metric"] == ("neg_root_mean_squared_error" if dataset == "diabetes" else "roc_auc")
