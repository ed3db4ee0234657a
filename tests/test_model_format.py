"""output.model_format (hptune.modelfile): model.skops beside or instead of model.joblib, through
the real CLI on the penguins CSV (text categories, missing values); predict trusts only the
types hptune produces, and a model skops cannot save is one line, not a traceback."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hptune import modelfile
from tests.conftest import run_cli

PENGUINS = """
name: penguins
seed: 1
data: {{path: {data}, target: species, drop: [year], test_size: 0.25}}
model: {{estimator: {estimator}, params: {{max_iter: 1000}}}}
search_space:
  C: [0.1, 1.0]
cv: {{folds: 3}}
strategy: {{kind: grid}}
"""


def _run(write_spec, out: Path, penguins: Path, *options: str, estimator: str = "logistic_regression"):
    spec = write_spec(PENGUINS.format(data=penguins, estimator=estimator))
    return run_cli("run", spec, "--out", out, "-q", *options)


def _record(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def _predict(out: Path, data: Path, target: Path, *options: str) -> pd.DataFrame:
    result = run_cli("predict", out, data, "-o", target, *options)
    assert result.exit_code == 0, result
    return pd.read_csv(target)


def test_skops_writes_model_skops_that_predicts_as_the_joblib_model(write_spec, tmp_path: Path, penguins_csv: Path) -> None:
    joblib_out, skops_out = tmp_path / "joblib", tmp_path / "skops"
    assert _run(write_spec, joblib_out, penguins_csv).exit_code == 0
    result = _run(write_spec, skops_out, penguins_csv, "--set", "output.model_format=skops")
    assert result.exit_code == 0, result
    assert (skops_out / "model.skops").exists() and not (skops_out / "model.joblib").exists()
    record = _record(skops_out)
    assert record["model_format"] == "skops" and _record(joblib_out)["model_format"] == "joblib"
    assert set(record["files"]) == {"trials.csv", "best.yaml", "model.skops"}
    assert record["files"]["model.skops"]["sha256"] == hashlib.sha256((skops_out / "model.skops").read_bytes()).hexdigest()
    assert record["files"]["model.skops"]["trial"] == record["model_trial"] == record["best_trial"]
    # How the model is stored is not what the experiment means: the same fingerprint.
    assert record["experiment"]["fingerprint"] == _record(joblib_out)["experiment"]["fingerprint"]
    for options in ((), ("--proba",)):
        from_skops = _predict(skops_out, penguins_csv, tmp_path / "s.csv", *options)
        from_joblib = _predict(joblib_out, penguins_csv, tmp_path / "j.csv", *options)
        assert len(from_skops) == len(pd.read_csv(penguins_csv))
        pd.testing.assert_frame_equal(from_skops, from_joblib, check_exact=True)


def test_switching_the_format_resumes_the_study_and_swaps_the_model_file(write_spec, tmp_path: Path, penguins_csv: Path) -> None:
    out = tmp_path / "out"
    assert _run(write_spec, out, penguins_csv).exit_code == 0
    first = _record(out)
    switched = _run(write_spec, out, penguins_csv, "--set", "output.model_format=skops")
    assert switched.exit_code == 0, switched
    assert "resuming: 2 of 2 trials done" in switched.stderr
    record = _record(out)
    assert record["trials"] == first["trials"] and record["experiment"]["fingerprint"] == first["experiment"]["fingerprint"]
    assert (out / "model.skops").exists() and not (out / "model.joblib").exists()
    assert set(record["files"]) == {"trials.csv", "best.yaml", "model.skops"} and record["model_format"] == "skops"
    back = _run(write_spec, out, penguins_csv)  # the key left out: joblib again
    assert back.exit_code == 0, back
    assert (out / "model.joblib").exists() and not (out / "model.skops").exists()
    assert set(_record(out)["files"]) == {"trials.csv", "best.yaml", "model.joblib"}


def test_predict_refuses_a_type_hptune_does_not_produce_unless_trusted(write_spec, tmp_path: Path, penguins_csv: Path) -> None:
    out = tmp_path / "out"
    estimator = "tests.skops_estimators.RenamedLogistic"
    result = _run(write_spec, out, penguins_csv, "--allow-module", "tests", "--set", "output.model_format=skops",
                  estimator=estimator)
    assert result.exit_code == 0, result
    refused = run_cli("predict", out, penguins_csv, "-o", tmp_path / "p.csv")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"error: {out / 'model.skops'} holds a type hptune does not produce: {estimator}; "
        f"if you trust this run, pass --trust {estimator}"
    )
    assert not (tmp_path / "p.csv").exists()
    trusted = _predict(out, penguins_csv, tmp_path / "p.csv", "--trust", estimator)
    assert set(trusted["prediction"]) == {"Adelie", "Chinstrap", "Gentoo"}


@pytest.mark.parametrize(
    ("estimator", "cause"),
    [
        ("HoldsAnEnum", "TypeError: Enum.__new__() missing 1 required positional argument: 'value'"),
        ("HoldsAPattern", "TypeError: object.__new__(re.Pattern) is not safe, use re.Pattern.__new__()"),
    ],
)
def test_a_model_skops_cannot_save_is_one_line_and_joblib_then_resumes(
    estimator: str, cause: str, write_spec, tmp_path: Path, penguins_csv: Path
) -> None:
    out = tmp_path / "out"
    options = ("--allow-module", "tests")
    result = _run(write_spec, out, penguins_csv, *options, "--set", "output.model_format=skops",
                  estimator=f"tests.skops_estimators.{estimator}")
    assert result.exit_code == 2, result
    assert result.stderr.strip() == (
        f"error: the model cannot be saved as skops ({cause}); set output.model_format: joblib to save it as a "
        "pickle (every trial is kept in the study)"
    )
    assert not (out / "model.skops").exists() and not (out / "run.json").exists()
    again = _run(write_spec, out, penguins_csv, *options, estimator=f"tests.skops_estimators.{estimator}")
    assert again.exit_code == 0, again
    assert "resuming: 2 of 2 trials done" in again.stderr and (out / "model.joblib").exists()


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.tree._tree.Tree", True),
        ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", True),
        ("numpy.dtype", True),
        ("numpy.float64", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("collections.OrderedDict", True),
        ("xgboost.sklearn.XGBClassifier", True),
        ("lightgbm.basic.Booster", True),
        ("sklearn.utils.shuffle", False),  # a function, not a type
        ("numpy.memmap", False),  # built from a file name, it opens (and may write) the file
        ("numpy.load", False),
        ("scipy.io.loadmat", False),
        ("sklearn.no_such.Thing", False),
        ("builtins.eval", False),
        ("posix.system", False),
        ("xgboost.core.DMatrix", False),
        ("tests.skops_estimators.RenamedLogistic", False),
        ("hptune.__main__.main", False),  # importing it would run the CLI
        ("sklearn.datasets._lfw.Memory", False),  # joblib's, imported there: not scikit-learn's
        ("sklearn.utils.parallel.ThreadpoolController", False),
        ("hptune.results.Path", False),
        ("sklearn.conftest.X", False),  # never imported: it would import pytest's fixtures
        ("numpy.f2py.__main__.main", False),
    ],
)
def test_the_types_hptune_trusts(name: str, trusted: bool) -> None:
    assert modelfile.is_trusted(name) is trusted
    assert "hptune.__main__" not in sys.modules and "numpy.f2py.__main__" not in sys.modules


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_alias_model_loads_from_skops_without_trust(penguins_csv: Path) -> None:
    """Each alias's fitted pipeline (auto preprocessing) saved as skops loads with no --trust and
    predicts as the model it was saved from: the allow-list covers what hptune produces."""
    from sklearn.base import is_classifier

    from hptune.estimators import ALIASES, build_pipeline, import_estimator, resolve_name

    frame = pd.read_csv(penguins_csv).dropna(subset=["body_mass_g"]).sample(120, random_state=0)
    X = frame.drop(columns=["species", "body_mass_g", "year"])
    targets = {"classification": frame["species"].astype("category").cat.codes, "regression": frame["body_mass_g"]}
    checked = []
    for alias, paths in ALIASES.items():
        for task, y in targets.items():
            try:
                cls = import_estimator(resolve_name(alias, task))
            except ValueError:  # catboost, when it is not installed
                continue
            if isinstance(paths, str) and is_classifier(cls()) != (task == "classification"):
                continue  # an alias of one task (svc, ridge) is fitted on that task only
            model = build_pipeline(cls, {}, "auto", X).fit(X, y)
            name, data = modelfile.dumps(model, "skops")
            path = Path(penguins_csv.parent / name)
            path.write_bytes(data)
            loaded = modelfile.load(path)
            np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
            checked.append(alias)
    assert {"random_forest", "hist_gradient_boosting", "knn", "mlp", "xgboost", "lightgbm"} <= set(checked)


def test_a_run_without_a_refit_keeps_the_model_in_the_format_it_has(
    write_spec, tmp_path: Path, penguins_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _run(write_spec, out, penguins_csv).exit_code == 0
    model = (out / "model.joblib").read_bytes()

    def interrupted(*args, **kwargs):  # Ctrl-C at the moment the refit runs
        raise KeyboardInterrupt

    monkeypatch.setattr("hptune.finish.refit_trial", interrupted)
    result = _run(write_spec, out, penguins_csv, "--set", "output.model_format=skops")
    assert result.exit_code == 130, result
    record = _record(out)  # the model it has, in its format: better than none, and said so
    assert (out / "model.joblib").read_bytes() == model and not (out / "model.skops").exists()
    assert record["model_format"] == "joblib" and record["files"]["model.joblib"]["kept_from_an_earlier_run"] is True
