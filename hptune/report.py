"""report.html: one self-contained page that shows a run, offline.

The page is built from the run's set (run.json, trials.csv, best.yaml, read back with
``hptune.outputs.load_run``) and from its study (for Optuna's figures). plotly.js is embedded
once, inline; every figure is JSON data in the page, drawn by ``Plotly.newPlot`` when it
comes near the screen (so a page of 2,000 trials opens at once). Nothing is
fetched: no CDN, no MathJax, no web fonts, no server. It is written after run.json and is not
part of the set that run.json lists: it is a view of the set, written again by ``hptune report``
at any time, and a page that cannot be drawn never makes the set itself incomplete.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from hptune import results
from hptune.errors import StorageError
from hptune.gates import Verdict
from hptune.outputs import FinishedRun, RunFolderError, load_run
from hptune.report_figures import Section, build_sections, study_view

log = logging.getLogger(__name__)

REPORT_FILE = results.REPORT_FILE

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}
.banner{padding:.6em 1em;margin:1em 0;border-radius:4px;background:#fff3cd;border:1px solid #e0c060}
.banner.bad{background:#fde2e1;border-color:#d08080}
.note{color:#666;font-style:italic}.figure{min-height:450px}
nav a{margin-right:.8em}
"""


def report_run(folder: Path, storage: str | None = None) -> Path:
    """Write ``folder``/report.html from the run in ``folder`` and its study; return its path.

    The study is the folder's study.journal, or the database study run.json names: its URL
    is recorded with the password masked, so such a study needs ``storage`` (the full URL)
    unless the URL holds no password. Raises RunFolderError when the folder holds no whole
    run, StorageError when the study cannot be opened.
    """
    run = load_run(folder)
    study = open_run_study(folder, run, storage)
    return write_report(folder, study, run)


def open_run_study(folder: Path, run: FinishedRun, storage: str | None) -> Any:
    import optuna

    from hptune import storage as storage_mod

    recorded = (run.run.get("study") or {})
    name = recorded.get("name") or (run.run.get("experiment") or {}).get("name")
    url = storage or recorded.get("storage")
    if storage_mod.is_database_url(url):
        if "***" in str(url):
            raise StorageError(
                f"{folder}'s study is in the database {url} (password not recorded): give its URL with --storage"
            )
        backend = storage_mod.database_storage(str(url))
    else:
        journal = folder / results.STUDY_FILE
        if not journal.exists():
            raise RunFolderError(f"{folder} holds no {results.STUDY_FILE}: the study is needed to draw the report")
        backend = storage_mod.journal_storage(journal)
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        raise StorageError(f"no study named {name!r} in {storage_mod.mask_url(str(url)) if url else journal}") from None


def write_report(folder: Path, study: Any, run: FinishedRun | None = None) -> Path:
    """Write report.html for the set in ``folder`` (read back when ``run`` is not given)."""
    run = run or load_run(folder)
    path = folder / REPORT_FILE
    results.write_atomic(path, render(run, study))
    return path


def render(run: FinishedRun, study: Any) -> str:
    """The whole page, as text."""
    from plotly.offline import get_plotlyjs

    record = run.run
    objectives = list((record.get("objectives") or {}).get("names") or [])
    metric = _metric(run, objectives)
    seed = int((run.best or {}).get("seed", 0) or 0)
    sections = build_sections(study_view(study, _infeasible(run.table)), run.table, metric, objectives, seed)
    name = (record.get("experiment") or {}).get("name", "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>hptune report: {_e(name)}</title><style>{_STYLE}</style>",
        # plotly.js once, inline: the page works from disk, offline, attached to a CI job.
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        _header(run, metric, objectives),
        *_body(sections, run.table),
        f"<script>{_DRAW}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _body(sections: list[Section], table: Any) -> list[str]:
    """The sections in order; with nothing drawn (every trial failed), the failures first."""
    figures = [_section_html(s) for s in sections]
    if not any(s.figure is not None for s in sections):
        return [_failures(table), *figures]
    return [_nav(sections), *figures, _failures(table)]


def _infeasible(table: Any) -> set[int] | None:
    """The complete trials that broke a constraints: limit (None: the experiment has none)."""
    if table.empty or "feasible" not in table.columns:
        return None
    return {int(n) for n, ok in zip(table["number"], table["feasible"], strict=True) if str(ok) == "False"}


def _metric(run: FinishedRun, objectives: list[str]) -> str | None:
    """The main metric: best.yaml's, else the first scored column of trials.csv."""
    if run.best and run.best.get("metric"):
        return str(run.best["metric"])
    for column in run.table.columns:
        if column.startswith("mean_test_"):
            return column[len("mean_test_"):]
    return objectives[0] if objectives else None


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_BANNERS = {
    "interrupted": ("bad", "This run was interrupted (Ctrl-C or SIGTERM): the search did not spend its budget, "
                           "and what is shown is what had completed."),
    "stopped": ("bad", "This run was stopped by a failure limit."),
    "failed": ("bad", "Every trial failed: no score to show. The failures are listed below."),
    "infeasible": ("bad", "No trial kept every constraint."),
    "partial": ("", "This run is partial"),
}


def _header(run: FinishedRun, metric: str | None, objectives: list[str]) -> str:
    record = run.run
    status = record.get("status", "")
    experiment = record.get("experiment") or {}
    study = record.get("study") or {}
    counts = record.get("trials") or {}
    budget = record.get("budget") or {}
    used = sum(counts.get(k, 0) for k in ("complete", "fail", "pruned"))
    states = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    against, table = record.get("baseline"), run.table
    # --baseline trials (this run's, and any earlier one's) cost none of the budget (hptune.baseline).
    extra = int(table.loc[table["state"].isin(["COMPLETE", "FAIL", "PRUNED"]), "baseline"].sum()) \
        if "baseline" in table.columns else 0
    used -= extra
    budget_text = f"{used} of {budget['n_trials']} trials" if budget.get("n_trials") else f"{used} trials"
    budget_text += {0: "", 1: " and the baseline's"}.get(extra, f" and {extra} baseline trials")
    rows = [
        ("experiment", experiment.get("name")),
        ("status", status),
        ("strategy", study.get("sampler")),
        ("budget used", f"{budget_text} ({states or 'none ran'})"),
        ("stop reason", " – ".join(str(x) for x in (record.get("stop_reason"), record.get("stop_detail")) if x)),
        ("duration", f"{record['duration_seconds']:.1f} s" if record.get("duration_seconds") is not None else None),
    ]
    if objectives:
        rows.append(("objectives", ", ".join(objectives)))
        best_values = (record.get("objectives") or {}).get("best_values") or {}
        if best_values:
            select = (record.get("objectives") or {}).get("select")
            rows.append((f"best's values (select: {select})",
                         ", ".join(f"{k} {_number(v)}" for k, v in best_values.items())))
    limits = record.get("constraints")
    if limits:
        given = ", ".join(f"{k}: {v}" for k, v in (limits.get("limits") or {}).items())
        rows.append(("constraints", f"{limits.get('feasible')} of {limits.get('complete')} complete trials keep "
                                    f"every limit ({given})"))
    if record.get("best_trial") is not None:
        rows += [
            ("best trial", record.get("best_trial")),
            (f"CV {metric}", f"{_number(record.get('cv_score'))} ± {_number(record.get('cv_std'))}"),
            (f"train {metric}", _number(record.get("train_score"))),
            (f"held-out test {metric}", _number(record.get("test_score"))),
        ]
    if against:
        measured = ("" if against.get("improvement") is None else
                    f": cv {against['cv_score']:.4f}, the best improves on it by {against['improvement']:+.4f} "
                    f"± {against.get('standard_error') or 0:.4f} (one standard error)")
        rows.append(("baseline", f"{against['file']} (trial {against.get('trial')}, {against.get('state')}){measured}"))
    for verdict in (Verdict(**v) for v in record.get("gates") or []):
        rows.append((f"gate {verdict.title}", f"{'passed' if verdict.passed else 'MISSED'} ({verdict.describe(metric or '')})"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v if v is not None else '–')}</td></tr>" for k, v in rows)
    out = [f"<h1>hptune report: {_e(experiment.get('name', ''))}</h1>"]
    if status in _BANNERS:
        kind, text = _BANNERS[status]
        if status == "partial":
            text = f"{text}: {record.get('partial_because', '')}"
        out.append(f'<div class="banner {kind}" id="status-banner">{_e(text)}</div>')
    out.append(f'<table id="summary">{body}</table>')
    params = (run.best or {}).get("params") or {}
    if params:
        cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_param(v))}</td></tr>" for k, v in params.items())
        out.append(f'<h2>Best parameters</h2><table id="best-params">{cells}</table>')
    return "\n".join(out)


def _param(value: Any) -> str:
    """A parameter as a person reads it (best.yaml keeps the exact number)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _nav(sections: list[Section]) -> str:
    links = "".join(f'<a href="#{_e(s.key)}">{_e(s.title)}</a>' for s in sections if s.figure is not None)
    return f"<nav>{links}<a href=\"#failures\">Failures</a></nav>"


def _section_html(section: Section) -> str:
    import plotly.io

    head = f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2><p>{_e(section.about)}</p>'
    if section.figure is None:
        return f'{head}<p class="note">{_e(section.note or "not drawn")}</p></section>'
    section.figure.update_layout(template="plotly_white")
    # The figure as JSON data in the page ("</" escaped so no text in it can end the script);
    # _DRAW draws it when it comes near the screen.
    data = plotly.io.to_json(section.figure, validate=False).replace("</", "<\\/")
    key = f"fig-{section.key}"
    return (f'{head}<div class="figure"><div class="plot" id="{key}"></div></div>'
            f'<script type="application/json" id="data-{key}">{data}</script></section>')


#: Draws each figure when it comes within a screen of the viewport, so a page of 2,000 trials
#: opens at once and scrolls; hptuneDrawAll() draws every figure (before printing, in tests).
_DRAW = """
(function () {
  var config = {displaylogo: false, responsive: true};
  var drawn = {};
  function draw(div) {
    if (!drawn[div.id]) {
      var fig = JSON.parse(document.getElementById('data-' + div.id).textContent);
      drawn[div.id] = Plotly.newPlot(div, fig.data, fig.layout, config);
    }
    return drawn[div.id];
  }
  var divs = Array.prototype.slice.call(document.querySelectorAll('div.plot'));
  window.hptuneDrawAll = function () { return Promise.all(divs.map(draw)); };
  window.addEventListener('beforeprint', window.hptuneDrawAll);
  if ('IntersectionObserver' in window) {
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); } });
    }, {rootMargin: '100% 0px'});
    divs.forEach(function (div) { seen.observe(div); });
  } else {
    divs.forEach(draw);
  }
})();
"""


def _failures(table: Any) -> str:
    head = '<section id="failures"><h2>Failures</h2>'
    if table.empty or "error" not in table.columns:
        return f'{head}<p class="note">no trial ran</p></section>'
    failed = table[(table["state"] == "FAIL") & table["error"].notna()]
    if failed.empty:
        return f'{head}<p class="note">no trial failed</p></section>'
    rows = []
    for message, group in failed.groupby("error", sort=False):
        numbers = [int(n) for n in group["number"]]
        shown = ", ".join(str(n) for n in numbers[:20]) + (" …" if len(numbers) > 20 else "")
        rows.append((len(numbers), f"<tr><td>{len(numbers)}</td><td>{_e(shown)}</td><td><code>{_e(message)}</code></td></tr>"))
    rows.sort(key=lambda row: -row[0])
    body = "".join(row for _, row in rows)
    return (f'{head}<p>Failed trials grouped by message, most common first.</p><table id="failure-table">'
            f"<tr><th>trials</th><th>numbers</th><th>message</th></tr>{body}</table></section>")

