from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hptune.cli import app

#: Every trial fails (min_samples_split must be >= 2): the all-failed run, shared by tests.
ALL_FAILED = """
name: all-fail
data: {dataset: wine}
model: {estimator: decision_tree}
search_space:
  min_samples_split: [1]
  max_depth: [2, 3]
cv: {folds: 3}
strategy: {kind: grid}
"""


ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def __repr__(self) -> str:
        return f"exit={self.exit_code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cli(*args: str) -> CliResult:
    """Run the real Typer app; any exception other than SystemExit is re-raised, so a crash
    cannot pass as an exit code."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a YAML experiment (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture(scope="session")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Palmer penguins data (text categoricals, missing values) from its package, as a CSV."""
    import palmerpenguins

    path = tmp_path_factory.mktemp("penguins") / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(path, index=False)
    return path


@pytest.fixture
def postgres_url():
    """A fresh, empty database on the test server; dropped afterwards."""
    admin = os.environ.get("HPTUNE_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("CI") or os.environ.get("HPTUNE_REQUIRE_POSTGRES"):
            pytest.fail("HPTUNE_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL (scripts/postgres.sh)")
        pytest.skip("no PostgreSQL: run `eval \"$(bash scripts/postgres.sh)\"` first")
    import psycopg

    name = f"hptune_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    # The password is ignored by the test server (trust) but must never appear in any output.
    base, _, _ = admin.rpartition("/")
    yield base.replace("postgres@", "postgres:s3cret-pw@", 1) + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
