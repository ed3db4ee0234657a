"""Experiments that `validate` used to accept and `run` then could not use, through the real CLI.

Each test states the rule it guards: when `validate` says a file is valid, preparing the
folds never fails and no trial fails for a reason the file alone decides.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _problems(result) -> list[str]:
    """The issue lines of a failed `validate` (the last line is the count)."""
    assert result.exit_code == 2, result
    assert "Traceback" not in result.stdout + result.stderr
    return result.stderr.splitlines()[:-1]


# -- c. validate builds the real held-out split and folds ------------------------------------

def _grouped(n_groups: int, per_group: int = 5) -> pd.DataFrame:
    rows = [
        {"customer": f"c{g}", "x": g * per_group + i, "label": "ab"[i % 2]}
        for g in range(n_groups)
        for i in range(per_group)
    ]
    return pd.DataFrame(rows)


GROUPED = """
name: grouped
data:
  path: data.csv
  target: label
  groups: customer
  test_size: {test_size}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
cv: {{folds: 5}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_group_folds_count_the_groups_left_after_the_held_out_split(tmp_path, write_spec) -> None:
    # 6 groups pass a count made before the split; 2 of them are then held out, and GroupKFold
    # cannot make 5 folds of 4 groups.
    _csv(tmp_path, _grouped(6))
    spec = write_spec(GROUPED.format(test_size=0.2))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:10:6: cv.folds: 5 group folds need at least 5 groups in the training part, found 4 "
        "(6 groups, 2 held out by data.test_size: 0.2)"
    ]
    result = run_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2, result
    assert not (tmp_path / "out").exists()


def test_enough_groups_after_the_split_runs(tmp_path, write_spec) -> None:
    _csv(tmp_path, _grouped(7))
    spec = write_spec(GROUPED.format(test_size=0.2))
    assert run_cli("validate", spec).exit_code == 0
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result


def _classes(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"x": range(len(labels)), "label": labels})


CLASSES = """
name: classes
data: {{path: data.csv, target: label, test_size: 0}}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
cv: {{kind: {kind}, folds: {folds}}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_stratified_folds_need_each_class_in_more_rows_than_folds_somewhere(tmp_path, write_spec) -> None:
    # Every class has fewer rows than folds: StratifiedKFold refuses to split at all.
    _csv(tmp_path, _classes({"a": 4, "b": 4}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=5))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:24: cv.folds: 5 stratified folds need a class with at least 5 rows in the training "
        "part, found at most 4 ('a': 4, 'b': 4)"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_class_with_a_single_training_row_is_refused_for_stratified_cv(tmp_path, write_spec) -> None:
    # One fold would train without class 'c' and test on it: the model never saw that class.
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 1}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:2:24: data.target: class 'c' has 1 row in the training part: the stratified fold that "
        "tests it trains without it; add rows of it or remove it from the data"
    ]


def test_a_shuffled_stratified_split_with_a_one_row_class_is_refused(tmp_path, write_spec) -> None:
    # StratifiedShuffleSplit raises on it; today that was a traceback from `run`.
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 1}))
    spec = write_spec(CLASSES.format(kind="shuffle", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:2:24: data.target: class 'c' has 1 row in the training part; shuffled stratified splits "
        "need at least 2 of each class: add rows of it or remove it from the data"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_class_with_fewer_rows_than_folds_is_only_a_warning(tmp_path, write_spec) -> None:
    _csv(tmp_path, _classes({"a": 10, "b": 10, "c": 2}))
    spec = write_spec(CLASSES.format(kind="stratified", folds=3))
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    assert result.stderr.splitlines() == [
        f"{spec}:2:24: data.target: warning: class 'c' has 2 rows in the training part, fewer than the "
        "3 stratified folds: 1 fold tests without it"
    ]


def test_time_series_folds_need_one_row_more_than_folds(tmp_path, write_spec) -> None:
    _csv(tmp_path, pd.DataFrame({"x": range(5), "y": [0.5, 1.5, 2.5, 3.5, 4.5]}))
    spec = write_spec(
        """
        name: ts
        data: {path: data.csv, target: y, test_size: 0}
        task: regression
        model: {estimator: ridge}
        search_space:
          alpha: {type: float, low: 0.1, high: 10, log: true}
        cv: {kind: timeseries, folds: 5}
        """
    )
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:7:24: cv.folds: 5 time-series folds need at least 6 rows in the training part "
        "(each fold trains on the rows before it), found 5"
    ]
    assert run_cli("run", spec, "--out", tmp_path / "out").exit_code == 2


def test_a_fold_that_trains_on_one_class_is_refused(tmp_path, write_spec) -> None:
    # Time-ordered rows sorted by class: the first fold trains on 'a' alone, so every trial
    # would fail ("needs samples of at least 2 classes").
    _csv(tmp_path, _classes({"a": 12, "b": 12}))
    spec = write_spec(CLASSES.format(kind="timeseries", folds=3))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:6: cv.kind: folds 0, 1 train on one class only (fold 0: 'a'); a classifier needs two: "
        "time-series folds train on the earliest rows, which hold one class here; use another cv.kind"
    ]


def test_the_validated_split_and_folds_are_the_ones_the_runner_builds(tmp_path, write_spec) -> None:
    from hptune.cv import make_folds, make_splitter
    from hptune.data import split_holdout
    from hptune.validate import load_experiment

    _csv(tmp_path, _grouped(9))
    exp = load_experiment(write_spec(GROUPED.format(test_size=0.25)))
    spec = exp.spec
    split = split_holdout(exp.data, spec.data.test_size, spec.seed, exp.task, ordered=False)
    folds = make_folds(make_splitter(spec.cv, exp.task, spec.seed, True), split.X_train, split.y_train,
                       split.groups_train)
    assert exp.split is not None and exp.folds is not None
    assert exp.split.X_train.equals(split.X_train) and exp.split.y_test.equals(split.y_test)
    assert [(list(a), list(b)) for a, b in exp.folds] == [(list(a), list(b)) for a, b in folds]


# -- d. binary metrics: the positive class, and targets with more than two classes -----------

def _binary(labels: tuple, n: int = 60) -> pd.DataFrame:
    # Two overlapping classes, so that no fold scores a perfect (and uninformative) 1.0.
    import numpy as np

    rng = np.random.default_rng(0)
    positive = np.arange(n) % 3 == 0
    return pd.DataFrame({"x": rng.normal(size=n) + positive * 1.5, "target": [labels[int(p)] for p in positive]})


BINARY = """
name: binary
data: {{path: data.csv, target: target, test_size: 0{extra}}}
model: {{estimator: logistic_regression, preprocessing: none}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
metric: {metric}
extra_metrics: {extras}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_a_binary_metric_on_text_labels_asks_which_class_is_positive(tmp_path, write_spec) -> None:
    _csv(tmp_path, _binary(("no", "yes")))
    spec = write_spec(BINARY.format(extra="", metric="f1", extras="[precision, average_precision, roc_auc]"))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:1: metric: 'f1' needs to know which class is positive; the target's labels are 'no', 'yes': "
        "set data.positive_class",
        f"{spec}:7:17: extra_metrics[0]: 'precision' needs to know which class is positive; the target's labels "
        "are 'no', 'yes': set data.positive_class",
        f"{spec}:7:28: extra_metrics[1]: 'average_precision' needs to know which class is positive; the "
        "target's labels are 'no', 'yes': set data.positive_class",
    ]


def test_roc_auc_on_text_labels_needs_no_positive_class(tmp_path, write_spec) -> None:
    _csv(tmp_path, _binary(("no", "yes")))
    spec = write_spec(BINARY.format(extra="", metric="roc_auc", extras="[accuracy]"))
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    assert (pd.read_csv(tmp_path / "out" / "trials.csv")["state"] == "COMPLETE").all()


@pytest.mark.parametrize(
    ("labels", "positive", "written"),
    [(("no", "yes"), "yes", "'yes'"), (("no", "yes"), "no", "'no'"), ((0, 1), 0, "0"), ((False, True), False, "false")],
)
def test_the_positive_class_is_the_pos_label_of_every_binary_scorer(tmp_path, write_spec, labels, positive, written) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, make_scorer, precision_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    frame = _binary(labels)
    _csv(tmp_path, frame)
    spec = write_spec(BINARY.format(extra=f", positive_class: {written}", metric="f1", extras="[precision, recall]"))
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert (table["state"] == "COMPLETE").all()
    X, y = frame[["x"]], pd.read_csv(tmp_path / "data.csv")["target"]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    for _, row in table.iterrows():
        model = LogisticRegression(C=row["param_C"], random_state=0)
        for name, func in (("f1", f1_score), ("precision", precision_score)):
            expected = cross_val_score(model, X, y, cv=cv, scoring=make_scorer(func, pos_label=positive)).mean()
            assert row[f"mean_test_{name}"] == pytest.approx(expected, abs=1e-12)


def test_a_binary_only_metric_on_three_classes_names_the_multiclass_variants(write_spec) -> None:
    spec = write_spec(
        """
        name: iris-f1
        data: {dataset: iris}
        model: {estimator: logistic_regression}
        search_space:
          C: {type: float, low: 0.1, high: 10, log: true}
        metric: roc_auc
        extra_metrics: [f1, f1_samples, f1_macro]
        """
    )
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:6:1: metric: 'roc_auc' scores two classes, but the target has 3 (0, 1, 2): use roc_auc_ovo, "
        "roc_auc_ovo_weighted, roc_auc_ovr or roc_auc_ovr_weighted",
        f"{spec}:7:17: extra_metrics[0]: 'f1' scores two classes, but the target has 3 (0, 1, 2): use f1_macro, "
        "f1_micro or f1_weighted",
        f"{spec}:7:21: extra_metrics[1]: 'f1_samples' averages over each row's labels, for multilabel targets; "
        "hptune's have one label a row: use f1_macro, f1_micro or f1_weighted",
    ]


@pytest.mark.parametrize(
    ("labels", "written", "message"),
    [
        (("no", "yes"), "maybe", "'maybe' is not one of the target's labels: 'no', 'yes'"),
        (("no", "yes"), "'Yes'", "'Yes' is not one of the target's labels: 'no', 'yes'; did you mean 'yes'?"),
        (("no", "yes"), "yes", "true is a boolean (YAML reads unquoted yes, no, on, off, true and false as "
                               "booleans), but the target's labels are text: 'no', 'yes'; quote it: "
                               "positive_class: 'yes'"),
        (("0", "1"), "1", None),  # pandas reads these as numbers, so 1 is right
        ((0, 1), "'1'", "'1' is text, but the target's labels are numbers: 0, 1; write it without quotes"),
        ((0, 1), "true", "true is a boolean, but the target's labels are numbers: 0, 1"),
        ((False, True), "1", "1 is not one of the target's labels: false, true"),
        (("a", "b", "c"), "a", "applies to a target with two classes; this one has 3: 'a', 'b', 'c'"),
    ],
)
def test_positive_class_must_be_one_of_the_labels_with_their_type(tmp_path, write_spec, labels, written, message) -> None:
    frame = pd.DataFrame({"x": range(30), "target": [labels[i % len(labels)] for i in range(30)]})
    _csv(tmp_path, frame)
    spec = write_spec(BINARY.format(extra=f", positive_class: {written}", metric="accuracy", extras="[]"))
    result = run_cli("validate", spec)
    if message is None:
        assert result.exit_code == 0, result
    else:
        assert _problems(result) == [f"{spec}:2:54: data.positive_class: {message}"]


def test_positive_class_is_for_classification(tmp_path, write_spec) -> None:
    _csv(tmp_path, pd.DataFrame({"x": range(30), "target": [i * 0.5 for i in range(30)]}))
    spec = write_spec(BINARY.format(extra=", positive_class: 1", metric="r2", extras="[]"))
    assert _problems(run_cli("validate", spec)) == [
        f"{spec}:2:54: data.positive_class: applies to classification; the task is regression"
    ]


def test_a_study_made_by_0_1_0_still_resumes(tmp_path: Path) -> None:
    # data.positive_class is a new key: at its default it must not change the experiment's
    # fingerprint, or every existing study would refuse to resume.
    import shutil

    fixture = Path(__file__).parent / "fixtures" / "study-0.1.0"
    shutil.copytree(fixture, tmp_path / "study")
    result = run_cli("run", tmp_path / "study" / "experiment.yaml", "--out", tmp_path / "study", "-q")
    assert result.exit_code == 0, result
    assert "resuming: 3 of 3 trials done" in result.stderr


# -- k. estimators that take **kwargs (LightGBM, XGBoost) ------------------------------------

BOOSTED = """
name: boosted
data: {{path: data.csv, target: target, test_size: 0}}
model:
  estimator: {estimator}
  params: {params}
search_space:
  {tuned}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: 3}}
"""


def test_lightgbm_takes_parameters_beyond_get_params(tmp_path, write_spec) -> None:
    import joblib
    import yaml

    pytest.importorskip("lightgbm")
    _csv(tmp_path, _binary((0, 1), n=90))
    # verbose and max_bin are LightGBM parameters its scikit-learn class takes through **kwargs.
    spec = write_spec(BOOSTED.format(estimator="lightgbm", params="{verbose: -1, n_estimators: 5}",
                                     tuned="max_bin: [15, 31]\n  num_leaves: [4, 8]"))
    check = run_cli("validate", spec)
    assert check.exit_code == 0 and check.stderr == "", check
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    assert "[LightGBM]" not in result.stdout  # verbose: -1 reached the model
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert (table["state"] == "COMPLETE").all() and set(table["param_max_bin"]) <= {15, 31}
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    model = joblib.load(tmp_path / "out" / "model.joblib").named_steps["model"]
    assert model.get_params()["verbose"] == -1 and model.get_params()["max_bin"] == best["params"]["max_bin"]


def test_xgboost_takes_parameters_beyond_get_params(tmp_path, write_spec) -> None:
    import joblib

    pytest.importorskip("xgboost")
    _csv(tmp_path, _binary((0, 1), n=90))
    spec = write_spec(BOOSTED.format(estimator="xgboost", params="{n_estimators: 5, max_cached_hist_node: 1024}",
                                     tuned="max_leaves: [4, 8]\n  min_split_loss: [0.0, 0.5]"))
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    table = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert (table["state"] == "COMPLETE").all() and "param_min_split_loss" in table.columns
    model = joblib.load(tmp_path / "out" / "model.joblib").named_steps["model"]
    assert model.get_params()["max_cached_hist_node"] == 1024


def test_a_likely_typo_for_a_kwargs_estimator_is_a_warning(tmp_path, write_spec) -> None:
    pytest.importorskip("lightgbm")
    _csv(tmp_path, _binary((0, 1)))
    spec = write_spec(BOOSTED.format(estimator="lightgbm", params="{verbose: -1, n_estimator: 5}",
                                     tuned="num_leave: [4, 8]"))
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    assert result.stderr.splitlines() == [
        f"{spec}:5:25: model.params.n_estimator: warning: LGBMClassifier does not list 'n_estimator'; did you "
        "mean 'n_estimators'? It takes **kwargs, so the name is passed to it as written",
        f"{spec}:7:3: search_space.num_leave: warning: LGBMClassifier does not list 'num_leave'; did you "
        "mean 'num_leaves'? It takes **kwargs, so the name is passed to it as written",
    ]


def test_an_estimator_without_kwargs_still_refuses_unknown_names(write_spec) -> None:
    spec = write_spec(
        """
        name: svc
        data: {dataset: iris}
        model: {estimator: svc, params: {verbose_level: 1}}
        search_space:
          C: [1, 2]
        """
    )
    assert _problems(run_cli("validate", spec)) == [f"{spec}:3:34: model.params.verbose_level: SVC has no parameter 'verbose_level'; did you mean 'verbose'?"]


# -- l. data that is probably a mistake: warnings, not errors --------------------------------

def _churn(n: int = 200) -> pd.DataFrame:
    frame = _binary(("no", "yes"), n=n).rename(columns={"target": "churn"})
    frame["customer_id"] = [f"C{i:05d}" for i in range(n)]
    frame["country"] = "FR"
    frame["churned"] = frame["churn"]
    frame["plan"] = ["basic", "pro", "team", "basic"] * (n // 4)
    return frame


CHURN = """
name: churn
data:
  path: data.csv
  target: churn
{drop}
model: {{estimator: logistic_regression}}
search_space:
  C: {{type: float, low: 0.1, high: 10, log: true}}
cv: {{folds: 3}}
strategy: {{kind: random, n_trials: 2}}
"""


def test_identifier_constant_and_target_copy_columns_are_warned_about(tmp_path, write_spec) -> None:
    _csv(tmp_path, _churn())
    spec = write_spec(CHURN.format(drop=""))
    expected = [
        f"{spec}:3:3: data.path: warning: column 'churned' is a copy of the target 'churn': a model would learn "
        "it and nothing else; add it to data.drop",
        f"{spec}:3:3: data.path: warning: column 'country' holds one value on every row ('FR'): it cannot help "
        "the model; add it to data.drop",
        f"{spec}:3:3: data.path: warning: column 'customer_id' looks like an identifier (text, 200 distinct "
        "values in 200 rows): one-hot encoding it costs time and memory and teaches the model nothing; add it "
        "to data.drop",
    ]
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    assert result.stderr.splitlines() == expected
    run = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert run.exit_code == 0, run
    assert run.stderr.splitlines()[:3] == expected


def test_data_warnings_point_at_data_drop_and_stop_once_dropped(tmp_path, write_spec) -> None:
    _csv(tmp_path, _churn())
    spec = write_spec(CHURN.format(drop="  drop: [country]"), name="some.yaml")
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{spec}:5:3: data.drop: warning: column '") for line in lines)
    spec = write_spec(CHURN.format(drop="  drop: [country, customer_id, churned]"), name="clean.yaml")
    result = run_cli("validate", spec)
    assert result.exit_code == 0 and result.stderr == "", result


def test_bundled_data_sets_get_no_data_warnings(write_spec) -> None:
    from tests.conftest import CONFIGS

    result = run_cli("validate", CONFIGS / "quickstart.yaml")
    assert result.exit_code == 0 and result.stderr == "", result
