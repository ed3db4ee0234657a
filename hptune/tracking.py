"""A copy of a run in MLflow (``output.mlflow``): one MLflow run per study, with the best
parameters, the scores, the output files and the model, and a nested run per finished trial.
An optional extra: ``pip install 'hptune[mlflow]'``.

Everything goes through MLflow's own client (``MlflowClient``, ``mlflow.sklearn.log_model``).
Logging happens once the outputs are written, so a tracking server that is down never costs a
run its files: the failure is recorded (``run.json``'s ``mlflow.error``, a warning in the
summary) and the run's exit code is what the run earned.

Resuming does not duplicate: the study keeps its MLflow run's id (``STUDY_MLFLOW_RUN``) and
later runs log into that run; each nested run carries its trial's number (``TAG_TRIAL``), and
the trials already logged are read with one search, so only the others are added.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hptune import __version__, results
from hptune.errors import UsageError
from hptune.trials import ATTR_CV, STUDY_MLFLOW_RUN, error_text, finished

if TYPE_CHECKING:
    from hptune.finish import RunResult
    from hptune.refit import Refit
    from hptune.spec import MlflowSpec
    from hptune.study import StudyHandle
    from hptune.validate import ValidatedExperiment

EXTRA = "pip install 'hptune[mlflow]'"
#: Tags hptune sets on MLflow runs.
TAG_STUDY = "hptune.study"
TAG_FINGERPRINT = "hptune.fingerprint"
TAG_TRIAL = "hptune.trial"  # a nested run's trial number
TAG_STATE = "hptune.state"  # a nested run's trial state: COMPLETE, PRUNED or FAIL
TAG_MODEL_SHA = "hptune.model_sha256"  # the model file the logged MLflow model was made from
TAG_MODEL_ID = "hptune.model_id"  # that MLflow model's id
#: Other files of the output folder logged when present (report.html: written by `hptune report`).
OPTIONAL_FILES = ("report.html", results.PARETO_FILE)
_STATUS = {"complete": "FINISHED", "partial": "FINISHED", "interrupted": "KILLED"}  # else FAILED
_TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_PARAM_LIMIT = 6000  # MLflow's longest param value

log = logging.getLogger(__name__)


class TrackingUnavailableError(UsageError):
    """Raised when ``output.mlflow`` is set but MLflow is not installed (the extra is missing)."""


def require(exp: ValidatedExperiment) -> None:
    """Fail before anything is trained when the file asks for MLflow and it cannot be imported."""
    if exp.spec.output.mlflow is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise TrackingUnavailableError(f"output.mlflow needs MLflow, which cannot be imported ({exc}): {EXTRA}") from None


def log_run(exp: ValidatedExperiment, handle: StudyHandle, result: RunResult, fitted: Refit | None) -> None:
    """Log ``result`` (whose outputs are written) to MLflow when the file asks for it, and record
    the MLflow run (or why logging failed) in ``result.mlflow`` and in run.json."""
    spec = exp.spec.output.mlflow
    if spec is None:
        return
    record: dict[str, Any] = {"run_id": None, "error": None}
    client = None
    clock = time.perf_counter()
    try:
        client, uri = _client(spec)
        record["tracking_uri"] = uri
        record.update(_log(client, spec, exp, handle, result, fitted, record))
    except Exception as exc:  # noqa: BLE001 - the outputs are written: a tracking failure is a warning
        message = " ".join(str(exc).split()) or type(exc).__name__
        record["error"] = f"{type(exc).__name__}: {message[:300]}"
        log.debug("logging to MLflow failed", exc_info=True)
    record["seconds"] = round(time.perf_counter() - clock, 3)
    result.mlflow = record
    _record(result.files["run"], record)
    if record["error"] is None and client is not None:
        try:  # run.json last, with the MLflow run's id in it
            client.log_artifact(record["run_id"], str(result.files["run"]))
        except Exception as exc:  # noqa: BLE001 - as above
            record["error"] = f"{type(exc).__name__}: run.json was not logged: {' '.join(str(exc).split())[:300]}"
            _record(result.files["run"], record)


def _record(run_file: Path, record: dict[str, Any]) -> None:
    """run.json's ``mlflow`` (run.json is not in its own manifest, so the set stays whole)."""
    metadata = json.loads(run_file.read_text())
    metadata["mlflow"] = record
    results.write_atomic(run_file, results.json_text(metadata))


def _client(spec: MlflowSpec) -> tuple[Any, str]:
    from mlflow import MlflowClient
    from mlflow.tracking import get_tracking_uri

    from hptune.storage import mask_url

    client = MlflowClient(tracking_uri=spec.tracking_uri)
    uri = spec.tracking_uri or get_tracking_uri()
    return client, mask_url(uri) if "@" in uri else uri


def _log(
    client: Any, spec: MlflowSpec, exp: ValidatedExperiment, handle: StudyHandle, result: RunResult,
    fitted: Refit | None, record: dict[str, Any],
) -> dict[str, Any]:
    name = spec.experiment or exp.spec.name
    found = client.get_experiment_by_name(name)
    if found is None:
        experiment_id = client.create_experiment(name, artifact_location=spec.artifact_location)
    elif found.lifecycle_stage != "active":
        raise UsageError(f"the MLflow experiment {name!r} is deleted; restore it or name another in output.mlflow.experiment")
    else:
        experiment_id = found.experiment_id
    record.update(experiment=name, experiment_id=experiment_id)
    parent = _parent_run(client, experiment_id, exp, handle)
    record["run_id"] = parent.info.run_id
    clock = time.perf_counter()
    new = log_trials(client, experiment_id, parent.info.run_id, exp, handle.trials())
    trial_seconds = time.perf_counter() - clock
    _log_parent(client, parent, exp, result)
    model = _log_model(client, parent, exp, result, fitted)
    status = _STATUS.get(result.status, "FAILED")
    client.set_terminated(parent.info.run_id, status=status)
    return {"nested_runs_logged": new, "model_id": model, "seconds_per_trial": round(trial_seconds / new, 4) if new else None}


def _parent_run(client: Any, experiment_id: str, exp: ValidatedExperiment, handle: StudyHandle) -> Any:
    """The study's MLflow run: the one it recorded, when that run still exists in this
    experiment, else a new one (recorded in the study at once)."""
    from mlflow.exceptions import MlflowException

    from hptune.fingerprint import digest, fingerprint_parts

    known = handle.study.user_attrs.get(STUDY_MLFLOW_RUN)
    if known:
        try:
            run = client.get_run(known)
        except MlflowException:
            run = None
        if run is not None and run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active":
            return run
    tags = {
        TAG_STUDY: exp.spec.name,
        TAG_FINGERPRINT: digest(fingerprint_parts(exp)),
        "hptune.version": __version__,
        "hptune.estimator": exp.estimator_path,
        "hptune.metric": exp.metric,
    }
    run = client.create_run(experiment_id, tags=tags, run_name=exp.spec.name)
    handle.study.set_user_attr(STUDY_MLFLOW_RUN, run.info.run_id)
    return run


def log_trials(client: Any, experiment_id: str, parent_id: str, exp: ValidatedExperiment, trials: list[Any]) -> int:
    """A nested run for each finished trial not logged yet (one search reads which are);
    three calls per trial: create the run with its tags, log its params and metrics in one
    batch, end it with the trial's times and state. Returns how many were added."""
    from mlflow.entities import Metric, Param

    logged = _logged_trials(client, experiment_id, parent_id)
    new = 0
    for trial in finished(trials):
        if trial.number in logged:
            continue
        start = _millis(trial.datetime_start)
        end = _millis(trial.datetime_complete) or start
        tags = {
            "mlflow.parentRunId": parent_id,
            TAG_TRIAL: str(trial.number),
            TAG_STATE: trial.state.name,
        }
        error = error_text(trial)
        if error:
            tags["hptune.error"] = error[:_PARAM_LIMIT]
        run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=f"trial-{trial.number}")
        params = [Param(key, _param_value(value)) for key, value in _decoded(exp, trial.params).items()]
        metrics = [Metric(key, value, end or 0, 0) for key, value in trial_metrics(trial).items()]
        log_batch(client, run.info.run_id, metrics, params, [])
        client.set_terminated(run.info.run_id, status=_TRIAL_STATUS.get(trial.state.name, "FAILED"), end_time=end)
        new += 1
    return new


def trial_metrics(trial: Any) -> dict[str, float]:
    """A trial's fold means (``mean_test_<metric>``, ``mean_train_<metric>``, ``mean_fit_time``,
    ``mean_score_time``; a pruned trial's over the folds it ran) and its ``duration`` in seconds."""
    cv = trial.user_attrs.get(ATTR_CV) or {}
    metrics: dict[str, float] = {}
    for part in ("test", "train"):
        for metric, values in (cv.get(part) or {}).items():
            if values:
                metrics[f"mean_{part}_{metric}"] = sum(values) / len(values)
    for timing in ("fit_time", "score_time"):
        if cv.get(timing):
            metrics[f"mean_{timing}"] = sum(cv[timing]) / len(cv[timing])
    if trial.datetime_start and trial.datetime_complete:
        metrics["duration"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return metrics


def _logged_trials(client: Any, experiment_id: str, parent_id: str) -> set[int]:
    """The trial numbers of the parent's nested runs: one search (paged by 50 000 runs)."""
    numbers: set[int] = set()
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=50_000,
            page_token=token,
        )
        numbers.update(int(run.data.tags[TAG_TRIAL]) for run in page if TAG_TRIAL in run.data.tags)
        token = page.token
        if not token:
            return numbers


def _log_parent(client: Any, parent: Any, exp: ValidatedExperiment, result: RunResult) -> None:
    """The best parameters, the scores, the run's tags and the output files.

    MLflow never changes a param once logged: params hold the first best found; each best
    parameter is also a tag ``best.<name>``, rewritten each time, so a resumed study whose best
    changed shows its current best there (and in ``hptune.best_trial``, best.yaml, the metrics).
    """
    from mlflow.entities import Metric, Param, RunTag

    best = {**exp.fixed_params, **result.best_params} if result.best_trial is not None else {}
    now = int(time.time() * 1000)
    step = sum(result.counts.values())
    scores = {"cv_score": result.cv_score, "cv_std": result.cv_std, "train_score": result.train_score,
              "test_score": result.test_score}
    run_record = json.loads(result.files["run"].read_text())
    for metric, value in (run_record.get("test_scores") or {}).items():
        scores[f"test_{metric}"] = value
    metrics = [Metric(key, float(value), now, step) for key, value in scores.items() if value is not None]
    tags = {
        "hptune.status": result.status,
        "hptune.best_trial": "" if result.best_trial is None else str(result.best_trial),
        **{f"best.{key}": _param_value(value) for key, value in best.items()},
    }
    params = [] if parent.data.params else [Param(key, _param_value(value)) for key, value in best.items()]
    log_batch(client, parent.info.run_id, metrics, params, [RunTag(k, v) for k, v in tags.items()])
    client.log_artifact(parent.info.run_id, str(exp.path))
    for name in (results.BEST_FILE, results.TRIALS_FILE, *OPTIONAL_FILES):
        path = result.output_dir / name
        if path.exists():
            client.log_artifact(parent.info.run_id, str(path))


def log_batch(client: Any, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """``client.log_batch``, in as many calls as MLflow's limits per call ask (1000 metrics, 100
    params, 100 tags): one call for any usual trial or run."""
    step = 100
    for start in range(0, max(len(metrics), len(params), len(tags)), step):
        client.log_batch(run_id, metrics=metrics[start:start + step], params=params[start:start + step],
                         tags=tags[start:start + step])


def _log_model(client: Any, parent: Any, exp: ValidatedExperiment, result: RunResult, fitted: Refit | None) -> str | None:
    """The model as an MLflow sklearn model, unless this very model file was logged before;
    the id of the MLflow model that holds it (load it from ``models:/<id>``).

    In the run's own format: pickled for model.joblib (the same trust, for any estimator), and
    MLflow's skops format for model.skops, trusting the types that file needs (the MLflow model
    is made from the model hptune just saved and proved; MLflow records them in its MLmodel)."""
    from hptune import modelfile

    path: Path | None = result.files.get("model")
    if path is None:
        return None
    skops = modelfile.model_format(path) == "skops"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    tags = client.get_run(parent.info.run_id).data.tags
    if tags.get(TAG_MODEL_SHA) == sha and tags.get(TAG_MODEL_ID):
        return tags[TAG_MODEL_ID]
    import mlflow
    import mlflow.sklearn
    from mlflow.entities import RunTag

    # A kept model (no refit) is loaded as predict would, trusting the experiment's own estimator.
    model = fitted.model if fitted is not None else modelfile.load(path, trust=(exp.estimator_path,))
    formatting = {"serialization_format": "pickle"}
    if skops:
        formatting = {"serialization_format": "skops", "skops_trusted_types": modelfile.needed_types(path)}
    # log_model reads MLflow's global tracking URI (and set_tracking_uri exports it to the
    # environment): set for the call, then put back as it was.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)  # its note that pickles run code when loaded: so does model.joblib
    try:
        mlflow.set_tracking_uri(client.tracking_uri)
        # Made in the run's experiment first: log_model alone would put it in the active one.
        logged = client.create_logged_model(parent.info.experiment_id, name="model", source_run_id=parent.info.run_id)
        mlflow.sklearn.log_model(
            model, name="model", run_id=parent.info.run_id, model_id=logged.model_id, **formatting,
            pip_requirements=requirements(exp.estimator_path, skops),
        )
    finally:
        mlflow.set_tracking_uri(previous)
        if environment is not None:
            os.environ["MLFLOW_TRACKING_URI"] = environment
        mlflow_logger.setLevel(level)
    client.log_batch(parent.info.run_id, tags=[RunTag(TAG_MODEL_SHA, sha), RunTag(TAG_MODEL_ID, logged.model_id)])
    return logged.model_id


def requirements(estimator_path: str, skops: bool = False) -> list[str]:
    """What loading the model needs: scikit-learn, skops for a skops model, and the estimator's
    own distribution (as installed) when it is not scikit-learn's. Given, so that MLflow does
    not infer them by loading the model in a new Python process (seconds per run)."""
    from importlib.metadata import packages_distributions, version

    needed = ["scikit-learn", *(["skops"] if skops else [])]
    module = estimator_path.split(".", 1)[0]
    if module != "sklearn":
        needed += packages_distributions().get(module, [])[:1]
    return [f"{name}=={version(name)}" for name in needed]


def _decoded(exp: ValidatedExperiment, params: dict[str, Any]) -> dict[str, Any]:
    from hptune.space import decode_params

    return decode_params(exp.spec.search_space, params)


def _param_value(value: Any) -> str:
    return str(value)[:_PARAM_LIMIT]


def _millis(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
