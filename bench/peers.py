"""The tools users would pick instead of hptune, run as whole commands for the benchmarks.

Each subcommand does the same work as the hptune experiment it is compared with and prints a
JSON line with what the benchmark checks (scores), so wall time includes start-up as it does
for `hptune run`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings


def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True, as_frame=True)


def gridsearch(args: argparse.Namespace) -> dict:
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    X, y = _digits()
    grid = {"C": args.C, "gamma": args.gamma}
    search = GridSearchCV(
        SVC(random_state=0), grid, cv=StratifiedKFold(args.folds), n_jobs=args.n_jobs,
        return_train_score=args.train_scores,
    ).fit(X, y)
    means = {f"{p['C']!r}|{p['gamma']!r}": float(m) for p, m in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True)}
    return {"best_score": float(search.best_score_), "means": means}


def optuna_loop(args: argparse.Namespace) -> dict:
    """The loop a user writes by hand: TPE, cross_validate on fixed folds, in-memory study.

    ``optimize_seconds`` is ``study.optimize`` alone, timed in this process, to set against
    hptune's search phase (run.json); ``values`` and ``durations`` are every trial's value and
    duration (start to end, as hptune's trials.csv has it) by number."""
    import time

    import optuna
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X, y = load_iris(return_X_y=True, as_frame=True)
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(X, y))

    def objective(trial: optuna.Trial) -> float:
        C = trial.suggest_float("C", 1e-3, 1e3, log=True)
        scores = cross_validate(LogisticRegression(C=C, random_state=args.seed), X, y, cv=folds,
                                return_train_score=args.train_scores)
        return float(scores["test_score"].mean())

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=args.trials)
    optimize_seconds = time.perf_counter() - started
    LogisticRegression(C=study.best_params["C"], random_state=args.seed).fit(X, y)
    return {"best_score": study.best_value, "best_C": study.best_params["C"], "optimize_seconds": optimize_seconds,
            "values": {str(t.number): t.value for t in study.trials},
            "durations": {str(t.number): t.duration.total_seconds() for t in study.trials}}


def gridsearch_csv(args: argparse.Namespace) -> dict:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    frame = pd.read_csv(args.path)
    X, y = frame.drop(columns=["target"]), frame["target"]
    search = GridSearchCV(
        LogisticRegression(random_state=0), {"C": args.C}, cv=StratifiedKFold(args.folds), n_jobs=1,
        return_train_score=True,
    ).fit(X, y)
    return {"best_score": float(search.best_score_)}


def gridsearch_pipeline(args: argparse.Namespace) -> dict:
    """GridSearchCV over the very Pipeline hptune builds for `preprocessing: auto` (imported
    from hptune, so both preprocess the same way), on the same KFold folds; it re-imputes and
    re-encodes every fold for every candidate, as a user's GridSearchCV over a Pipeline does."""
    import time

    import pandas as pd
    from sklearn.model_selection import GridSearchCV, KFold

    from hptune.estimators import build_pipeline, import_estimator, pipeline_params

    frame = pd.read_csv(args.path)
    X, y = frame.drop(columns=[args.target]), frame[args.target]
    pipeline = build_pipeline(import_estimator(args.estimator), json.loads(args.fixed), "auto", X)
    started = time.perf_counter()
    search = GridSearchCV(
        pipeline, pipeline_params({args.param: args.values}), scoring=args.metric, n_jobs=args.n_jobs,
        cv=KFold(args.folds, shuffle=True, random_state=args.seed),
    ).fit(X, y)
    fit_seconds = time.perf_counter() - started
    values = [float(p[f"model__{args.param}"]) for p in search.cv_results_["params"]]
    return {"values": values, "means": [float(m) for m in search.cv_results_["mean_test_score"]],
            "fit_seconds": fit_seconds}


def _forest(params: dict):
    """The pipeline hptune's `preprocessing: auto` builds for all-numeric columns: a median
    imputer, then the forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(SimpleImputer(strategy="median"), RandomForestClassifier(random_state=0, **params))


def _forest_scores(params: dict) -> float:
    """Mean accuracy over the folds, the imputer already applied to each fold (as hptune does
    for every trial after the first)."""
    from sklearn.ensemble import RandomForestClassifier

    scores = []
    for X_fit, y_fit, X_held, y_held in _FOREST_DATA:
        model = RandomForestClassifier(random_state=0, **params).fit(X_fit, y_fit)
        scores.append(model.score(X_held, y_held))
    return float(sum(scores) / len(scores))


_FOREST_DATA: tuple = ()


def forest_pool(args: argparse.Namespace) -> dict:
    """The least any tool can do for the parallel-scaling work: the same forests, parameters
    and folds, run by a bare multiprocessing pool (fork, one task at a time), no storage, no
    validation; then the best pipeline refitted. Its n_jobs 2 / n_jobs 1 ratio is this machine's
    ceiling for that work, start-up included."""
    global _FOREST_DATA
    import multiprocessing

    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import StratifiedKFold, train_test_split

    X, y = _digits()
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    # Each fold imputed once, before the trials (the imputer is not tuned): the same work per
    # trial as hptune, which keeps each fold's preprocessed data.
    _FOREST_DATA = tuple(
        (imputer.fit_transform(X_train.iloc[fit]), y_train.iloc[fit], imputer.transform(X_train.iloc[held]), y_train.iloc[held])
        for fit, held in StratifiedKFold(3).split(X_train, y_train)
        for imputer in [SimpleImputer(strategy="median")]
    )
    trials = [dict(n_estimators=args.n_estimators, **p) for p in json.loads(args.params)]
    if args.n_jobs == 1:
        scores = [_forest_scores(p) for p in trials]
    else:
        with multiprocessing.get_context("fork").Pool(args.n_jobs) as pool:
            scores = list(pool.imap(_forest_scores, trials, chunksize=1))
    best = max(range(len(trials)), key=scores.__getitem__)
    _forest(trials[best]).fit(X_train, y_train)
    return {"best_score": scores[best], "trials": len(trials)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    grid = sub.add_parser("gridsearch")
    grid.add_argument("--C", type=float, nargs="+", required=True)
    grid.add_argument("--gamma", type=float, nargs="+", required=True)
    grid.add_argument("--folds", type=int, default=3)
    grid.add_argument("--n-jobs", type=int, default=1)
    grid.add_argument("--train-scores", action="store_true")
    loop = sub.add_parser("optuna-loop")
    loop.add_argument("--trials", type=int, default=200)
    loop.add_argument("--folds", type=int, default=5)
    loop.add_argument("--seed", type=int, default=0)
    loop.add_argument("--train-scores", action="store_true")
    csv = sub.add_parser("gridsearch-csv")
    csv.add_argument("--path", required=True)
    csv.add_argument("--C", type=float, nargs="+", required=True)
    csv.add_argument("--folds", type=int, default=3)
    wide = sub.add_parser("gridsearch-pipeline")
    wide.add_argument("--path", required=True)
    wide.add_argument("--target", required=True)
    wide.add_argument("--estimator", required=True, help="dotted path, as hptune resolved it")
    wide.add_argument("--fixed", default="{}", help="JSON of the fixed parameters hptune resolved")
    wide.add_argument("--param", required=True)
    wide.add_argument("--values", type=float, nargs="+", required=True)
    wide.add_argument("--metric", required=True)
    wide.add_argument("--folds", type=int, default=5)
    wide.add_argument("--seed", type=int, default=0)
    wide.add_argument("--n-jobs", type=int, default=1)
    pool = sub.add_parser("forest-pool")
    pool.add_argument("--params", required=True, help="JSON list of {max_depth, max_features}")
    pool.add_argument("--n-jobs", type=int, default=1)
    pool.add_argument("--n-estimators", type=int, required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    commands = {"gridsearch": gridsearch, "optuna-loop": optuna_loop, "gridsearch-csv": gridsearch_csv,
                "gridsearch-pipeline": gridsearch_pipeline, "forest-pool": forest_pool}
    result = commands[args.command](args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
