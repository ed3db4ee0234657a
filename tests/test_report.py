"""report.html: written by `run` and by `hptune report`, one offline page, drawn in a real browser.

The browser tests drive Debian's chromium (scripts/chromium.sh installs it and exports
HPTUNE_TEST_CHROMIUM) with Playwright for Python. Without it they are skipped, except in CI
(CI=true or HPTUNE_REQUIRE_BROWSER), where a missing browser fails them. Each keeps a
screenshot in tests/artifacts/ to be looked at.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ALL_FAILED, run_cli

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"



def _bench():
    """bench/run.py as a module: its report_page study is the one these tests use too."""
    import importlib.util
    import sys

    if "bench_run" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parent.parent / "bench" / "run.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["bench_run"]


#: A conditional space (gamma, degree) beside plain ones, pruned hard: every figure has work.
CONDITIONAL = (_bench().REPORT_SPEC.replace("name: bench-report", "name: conditional")
               .replace("n_trials: 20}", "n_trials: 16, pruner: percentile, pruner_percentile: 80}"))

ONE_TRIAL = """
name: one
data: {dataset: iris}
model: {estimator: logistic_regression, params: {max_iter: 500}}
search_space:
  C: {type: float, low: 0.1, high: 10, log: true}
cv: {folds: 3}
strategy: {n_trials: 1}
"""

MULTI = """
name: tradeoff
seed: 0
data: {dataset: breast_cancer, test_size: 0.2}
model: {estimator: random_forest, params: {n_jobs: 1}}
search_space:
  n_estimators: {type: int, low: 2, high: 30, log: true}
  max_depth: {type: int, low: 1, high: 6}
  criterion: [gini, entropy]
objectives: [accuracy, model_mb]
cv: {folds: 3}
strategy: {n_trials: 8}
"""

CONSTRAINED = """
name: constrained
seed: 0
data: {dataset: iris, test_size: 0.2}
model: {estimator: svc}
search_space:
  C: {type: float, low: 0.01, high: 1000, log: true}
  gamma: {type: float, low: 1.0e-4, high: 10, log: true}
cv: {folds: 3}
strategy: {kind: random, n_trials: 15}
constraints: {max_overfit_gap: 0.01}
"""


def _run(tmp: Path, name: str, text: str, *args: str, code: int = 0) -> Path:
    spec = tmp / f"{name}.yaml"
    spec.write_text(textwrap.dedent(text).lstrip())
    out = tmp / name
    result = run_cli("run", spec, "--out", out, "-q", *args)
    assert result.exit_code == code, result
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished runs, each with the report `run` wrote: made once for the module."""
    tmp = tmp_path_factory.mktemp("reports")
    return {
        "conditional": _run(tmp, "conditional", CONDITIONAL),
        "all-failed": _run(tmp, "all-failed", ALL_FAILED, code=1),
        "one-trial": _run(tmp, "one-trial", ONE_TRIAL),
        "multi": _run(tmp, "multi", MULTI),
        "constrained": _run(tmp, "constrained", CONSTRAINED),
    }


def _figures(page: str) -> list[str]:
    return re.findall(r'id="fig-([a-z0-9-]+)"', page)


def _sections(page: str) -> dict[str, str]:
    """Each section's key and what it holds: 'figure' or its note."""
    found = {}
    for key, body in re.findall(r'<section id="([a-z0-9-]+)">(.*?)</section>', page, flags=re.S):
        note = re.search(r'<p class="note">(.*?)</p>', body)
        found[key] = "figure" if 'class="figure"' in body else (note.group(1) if note else "")
    return found


# -- what the page holds -----------------------------------------------------------------------

def test_run_writes_the_report_with_every_figure_of_a_conditional_pruned_search(runs) -> None:
    page = (runs["conditional"] / "report.html").read_text()
    sections = _sections(page)
    for key in ("history", "importance", "parallel", "contour", "overfit", "folds", "intermediate"):
        assert sections[key] == "figure", (key, sections[key])
    for param in ("C", "kernel", "gamma", "degree", "tol"):
        assert f"Slice: {param}" in page
    assert sum(1 for key in sections if key.startswith("slice-")) == 5
    assert "pareto" not in sections
    # The header: experiment, strategy, budget and trial states, stop reason, scores, best params.
    run = json.loads((runs["conditional"] / "run.json").read_text())
    assert run["budget"]["n_trials"] == 16
    assert "<th>strategy</th><td>random</td>" in page
    assert "of 16 trials" in page
    assert f"{run['cv_score']:.4g} ± {run['cv_std']:.4g}" in page
    assert 'id="best-params"' in page
    assert "held-out test accuracy" in page


def test_the_page_fetches_nothing_plotly_is_inline_once(runs) -> None:
    page = (runs["conditional"] / "report.html").read_text()
    # plotly.js, the figures as data (one each), and the script that draws them.
    assert page.count("<script") - page.count('<script type="application/json"') == 2
    assert page.count('<script type="application/json"') == len(_figures(page))
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=["\']?https?:', page)
    assert "cdn" not in page.split("</head>", 1)[1].lower()


def test_an_all_failed_study_gives_a_clear_page_with_the_failures_grouped(runs) -> None:
    page = (runs["all-failed"] / "report.html").read_text()
    assert "Every trial failed" in page
    table = re.search(r'<table id="failure-table">(.*?)</table>', page, flags=re.S).group(1)
    assert "<td>2</td><td>0, 1</td>" in table and "InvalidParameterError" in table
    assert _figures(page) == []
    notes = {key: note for key, note in _sections(page).items() if key != "failures"}
    assert set(notes.values()) <= {"no trial completed", "fewer than 2 complete trials"}


def test_a_one_trial_study_draws_what_one_trial_can_show(runs) -> None:
    sections = _sections((runs["one-trial"] / "report.html").read_text())
    assert sections["history"] == sections["slice-0"] == sections["overfit"] == sections["folds"] == "figure"
    assert sections["importance"] == "fewer than 2 complete trials"
    assert sections["contour"] == "no two numeric parameters were tuned together in two complete trials"


def test_several_objectives_show_each_history_and_the_pareto_front(runs) -> None:
    page = (runs["multi"] / "report.html").read_text()
    sections = _sections(page)
    assert sections["pareto"] == sections["history-0"] == sections["history-1"] == "figure"
    assert sections["importance"] == sections["contour"] == "figure"
    assert "Optimisation history: model_mb" in page
    assert "<th>objectives</th><td>accuracy, model_mb</td>" in page
    assert re.search(r"<th>best&#x27;s values \(select: accuracy\)</th><td>accuracy 0\.\d+, model_mb 0\.\d+</td>", page)


def test_infeasible_trials_show_as_such_and_are_never_the_best_so_far(runs) -> None:
    import pandas as pd

    table = pd.read_csv(runs["constrained"] / "trials.csv")
    assert (table["feasible"] == False).any() and (table["feasible"] == True).any()  # noqa: E712
    page = (runs["constrained"] / "report.html").read_text()
    history = json.loads(re.search(r'id="data-fig-history">(.*?)</script>', page, flags=re.S).group(1))
    assert "<th>constraints</th><td>1 of 6 complete trials keep every limit (max_overfit_gap: 0.01)</td>" in page
    names = [trace.get("name") for trace in history["data"]]
    assert "Infeasible Trial" in names
    best = next(trace for trace in history["data"] if trace.get("name") == "Best Value")
    feasible_scores = table[table["feasible"] == True]["mean_test_accuracy"]  # noqa: E712
    assert max(y for y in best["y"] if y is not None) == pytest.approx(feasible_scores.max())


# -- the command -------------------------------------------------------------------------------

def test_report_rewrites_the_page_from_the_folder(runs) -> None:
    path = runs["one-trial"] / "report.html"
    path.unlink()
    result = run_cli("report", runs["one-trial"])
    assert result.exit_code == 0, result
    assert result.stdout.strip() == f"report: {path}"
    assert path.exists()
    # It is a view of the set, not part of it: run.json does not list it, and the set still reads back.
    assert "report.html" not in json.loads((runs["one-trial"] / "run.json").read_text())["files"]


def test_report_on_a_folder_without_a_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("report", tmp_path)
    assert result.exit_code == 2, result
    assert result.stderr.strip() == f"error: {tmp_path} holds no hptune run (no run.json)"


def test_report_without_the_study_beside_the_set_is_one_line_and_exit_2(runs, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["one-trial"], copy)
    (copy / "study.journal").unlink()
    result = run_cli("report", copy)
    assert result.exit_code == 2, result
    assert result.stderr.strip() == f"error: {copy} holds no study.journal: the study is needed to draw the report"


def test_a_report_that_cannot_be_drawn_is_a_warning_and_the_set_stays_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hptune.outputs import load_run

    def broken(*args, **kwargs):
        raise RuntimeError("a plotting bug")

    monkeypatch.setattr("hptune.report.render", broken)
    spec = tmp_path / "one.yaml"
    spec.write_text(textwrap.dedent(ONE_TRIAL))
    result = run_cli("run", spec, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    assert "warning: report.html was not written (RuntimeError: a plotting bug); `hptune report" in result.stderr
    assert not (tmp_path / "out" / "report.html").exists()
    assert load_run(tmp_path / "out").best is not None


def test_output_report_false_writes_no_page_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    out = _run(tmp_path, "one", ONE_TRIAL.replace("n_trials: 1", "n_trials: 2")
               + "output: {report: false}\n")
    assert not (out / "report.html").exists()
    # The same experiment with the report on continues the same study (the key is not in the fingerprint).
    (tmp_path / "one.yaml").write_text(textwrap.dedent(ONE_TRIAL).replace("n_trials: 1", "n_trials: 3"))
    result = run_cli("run", tmp_path / "one.yaml", "--out", out, "-q")
    assert result.exit_code == 0, result
    assert "resuming: 2 of 3 trials done" in result.stdout + result.stderr
    assert (out / "report.html").exists()


def test_an_interrupted_runs_report_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hptune.execution import Search

    original = Search.run

    def run_then_ctrl_c(self) -> None:
        original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Search, "run", run_then_ctrl_c)
    out = _run(tmp_path, "one", ONE_TRIAL.replace("n_trials: 1", "n_trials: 2"), code=130)
    page = (out / "report.html").read_text()
    assert re.search(r'<div class="banner bad" id="status-banner">This run was interrupted', page)


def test_a_database_studys_report_needs_its_url_since_run_json_masks_the_password(
    postgres_url: str, tmp_path: Path
) -> None:
    out = _run(tmp_path, "db", ONE_TRIAL.replace("n_trials: 1", "n_trials: 2"), "--storage", postgres_url)
    assert "s3cret-pw" not in (out / "report.html").read_text()
    (out / "report.html").unlink()
    result = run_cli("report", out)
    assert result.exit_code == 2, result
    assert "password not recorded): give its URL with --storage" in result.stderr
    assert "s3cret-pw" not in result.stderr
    result = run_cli("report", out, "--storage", postgres_url)
    assert result.exit_code == 0, result
    assert 'id="fig-history"' in (out / "report.html").read_text()


# -- in a real browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, or a skip (a failure in CI: .ci/run must install it)."""
    path = os.environ.get("HPTUNE_TEST_CHROMIUM") or "/usr/bin/chromium"
    required = os.environ.get("CI") or os.environ.get("HPTUNE_REQUIRE_BROWSER")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("playwright is not installed: make install installs hptune's dev extras")
        pytest.skip("playwright is not installed")
    if not os.access(path, os.X_OK):
        if required:
            pytest.fail(f"no chromium at {path}: .ci/run must install it (scripts/chromium.sh)")
        pytest.skip("no chromium: run `eval \"$(bash scripts/chromium.sh)\"` first")
    return path


#: How a figure shows it has drawn: plotly's SVG traces (scatter, bar, box, contour) or the
#: parallel-coordinates lines (WebGL canvas with its SVG axes).
_DRAWN = """
(div) => {
  const box = div.getBoundingClientRect();
  const traces = div.querySelectorAll('.main-svg .trace, .main-svg .parcoords');
  const marks = div.querySelectorAll('.main-svg path.point, .main-svg .bars path, .main-svg .boxes path,'
    + ' .main-svg .contourlevel path, .main-svg .js-line, .main-svg .lines path, canvas');
  return {width: box.width, height: box.height, traces: traces.length, marks: marks.length,
          plotly: div.classList.contains('js-plotly-plot')};
}
"""


def _open_in_browser(chromium: str, report: Path, shot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def only_local(route) -> None:
                url = route.request.url
                if url.startswith(("file://", "data:")):
                    route.continue_()
                else:
                    requests.append(url)
                    route.abort()

            page.route("**/*", only_local)
            page.goto(report.as_uri(), wait_until="load")
            # Figures near the screen draw by themselves; the rest when scrolled to, or now:
            page.evaluate("() => window.hptuneDrawAll()")
            page.wait_for_load_state("networkidle")
            figures = {div.get_attribute("id"): div.evaluate(_DRAWN) for div in page.query_selector_all("div[id^=fig-]")}
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, "figures": figures}


@pytest.mark.parametrize("name", ["conditional", "multi", "one-trial", "all-failed", "constrained"])
def test_every_figure_draws_in_chromium_without_errors_or_requests(runs, chromium: str, name: str) -> None:
    report = runs[name] / "report.html"
    seen = _open_in_browser(chromium, report, ARTIFACTS / f"report-{name}.png")
    assert seen["errors"] == []
    assert seen["requests"] == []
    expected = _figures(report.read_text())
    assert sorted(seen["figures"]) == sorted(f"fig-{key}" for key in expected)
    for key, drawn in seen["figures"].items():
        assert drawn["plotly"] and drawn["width"] > 100 and drawn["height"] > 100, (key, drawn)
        assert drawn["traces"] > 0 and drawn["marks"] > 0, (key, drawn)


@pytest.mark.slow
def test_a_2000_trial_report_opens_and_draws_in_chromium(chromium: str, tmp_path: Path) -> None:
    """The study bench/run.py's report_page measures (timings there, not here)."""
    import subprocess
    import sys

    bench = _bench()
    spec = bench.write_spec(tmp_path, "report", bench.REPORT_SPEC)
    out = tmp_path / "big"
    subprocess.run([sys.executable, "-m", "hptune", "run", str(spec), "--out", str(out), "-q"], check=True,
                   capture_output=True, timeout=600)
    bench.grow_for_report(out, spec, 2000)  # and finalize writes the set and the report
    report = out / "report.html"
    assert report.stat().st_size < 20 * 2**20  # the contour's grid is coarsened (it was 46 MB)
    seen = _open_in_browser(chromium, report, ARTIFACTS / "report-2000-trials.png")
    assert seen["errors"] == [] and seen["requests"] == []
    assert len(seen["figures"]) == len(_figures(report.read_text())) >= 10
    for key, drawn in seen["figures"].items():
        assert drawn["traces"] > 0 and drawn["marks"] > 0, (key, drawn)
