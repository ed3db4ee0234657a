"""Where a study lives: a journal file on one machine, or a database shared by many.

Optuna's own designs do the distributed work: the journal file (with its file lock) for the
worker processes of one machine, RDBStorage (PostgreSQL, MySQL) with heartbeats for many
machines. This module only opens them robustly and keeps credentials out of anything shown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between a running trial's heartbeats, and after which a silent trial is failed.
HEARTBEAT_INTERVAL = 5
HEARTBEAT_GRACE = 20
#: Attempts to create Optuna's tables when many workers start at once on an empty database.
_CREATE_ATTEMPTS = 12


def sync_journals() -> None:
    """Force to disk every trial's end this process's journals still hold back (a journal
    fsyncs at most every half second: hptune.journal). Before the outputs name the study, and
    before an exit that would not wait for the pending fsync."""
    import sys

    journal = sys.modules.get("hptune.journal")  # not imported: no journal opened, nothing held back
    if journal is not None:
        journal.sync_pending()


def is_database_url(url: str | None) -> bool:
    return bool(url) and "://" in str(url)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for output files and logs."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let masking fail; hide everything after the scheme
        scheme = url.split("://", 1)[0]
        return f"{scheme}://***"


def journal_storage(path: Path) -> Any:
    from optuna.storages import JournalStorage

    from hptune.journal import JournalFileSyncedAtTrialEnds

    return JournalStorage(JournalFileSyncedAtTrialEnds(str(path)))


def database_storage(url: str, on_stale_trial: Callable[[Any, Any], None] | None = None) -> Any:
    """An RDBStorage with heartbeats, surviving the race of many workers creating its tables.

    Several processes creating Optuna's tables at once on an empty database make all but one
    fail (duplicate table/type errors); the losers wait a moment and try again, then find the
    tables there.
    """
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    from hptune.errors import StorageError

    shown = mask_url(url)  # errors name the URL the user gave, not the one rewritten below
    url = _with_installed_driver(url)
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            with _heartbeats_without_warning():
                return RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=HEARTBEAT_GRACE,
                    heartbeat_stale_trial_callback=on_stale_trial,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.InternalError) as exc:
            if attempt == _CREATE_ATTEMPTS:
                raise StorageError(f"cannot create Optuna's tables in {shown}: {_first_line(exc)}") from None
            log.debug("creating Optuna's tables raced another worker (%s); retrying", type(exc).__name__)
            time.sleep(random.uniform(0.05, 0.3) * attempt)
        except ImportError as exc:
            raise StorageError(
                f"no database driver for {shown} ({exc.name or exc}); for PostgreSQL: "
                f"pip install 'hptune[postgres]'"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
            raise StorageError(f"cannot open the study storage {shown}: {_first_line(exc)}") from None
    raise AssertionError("unreachable")


def _with_installed_driver(url: str) -> str:
    """Point a plain ``postgresql://`` URL at psycopg 3 when that is the driver installed.

    SQLAlchemy 2.1 uses psycopg 3 for plain URLs, 2.0 (the last for Python 3.10) psycopg2;
    ``hptune[postgres]`` installs psycopg 3, so say so explicitly and both work.
    """
    import importlib.util

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL is reported when it is opened
        return url
    if parsed.drivername != "postgresql" or importlib.util.find_spec("psycopg2") is not None:
        return url
    if importlib.util.find_spec("psycopg") is None:
        return url
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _first_line(exc: BaseException) -> str:
    # Database errors run to several lines (and can quote the URL): keep the first, masked.
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def claim(storage: Any, name: str) -> bool:
    """True for exactly one caller of all processes sharing ``storage``.

    It creates an (empty) study named ``name``; study names are unique in every Optuna
    storage, so only one creation succeeds, however many processes race.
    """
    import optuna

    try:
        optuna.create_study(study_name=name, storage=storage, load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def fail_stale_trials(study: Any) -> None:
    """Optuna's heartbeat check: fail the trials of dead workers."""
    import optuna

    with _heartbeats_without_warning():
        optuna.storages.fail_stale_trials(study)


@contextmanager
def _heartbeats_without_warning() -> Iterator[None]:
    """Heartbeats are "experimental" in Optuna's API, and warn on every use."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def trials_without_heartbeat(storage: Any, study: Any) -> list[int]:
    """Trial ids of the RUNNING trials of ``study`` that never recorded a heartbeat.

    Optuna's stale-trial check compares the last heartbeat with the grace period, so a trial
    whose worker died before its first heartbeat (or that a tool without heartbeats created)
    would stay RUNNING forever; the caller decides how old such a trial may get.
    """
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    if not isinstance(storage, RDBStorage):
        return []
    try:  # Optuna's private ORM: if a later Optuna moves it, lose this check, not the run
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        log.warning("this Optuna has no optuna.storages._rdb models: trials without heartbeat are not checked")
        return []
    with _create_scoped_session(storage.scoped_session) as session:
        running = (
            session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study._study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        return [trial.trial_id for trial in running if not trial.heartbeats]
