"""`doit report` (HTML + Markdown report from the results store) and `doit results_export`."""
from __future__ import annotations

from . import artifacts_dir, doit_var, params


def _report() -> object:
    from doit.exceptions import TaskFailed

    from ..errors import UserError
    from ..measure.report import write_report
    from ..core.results import ResultStore

    try:
        html_path, md_path = write_report(ResultStore(artifacts_dir() / "results.sqlite"), artifacts_dir() / "report")
    except UserError as exc:  # dmsbuild.toml that does not load, an unreadable store
        return TaskFailed(str(exc))
    print(f"report: {html_path}\nreport: {md_path}")
    return None


@params()
def task_report() -> dict:
    """Write artifacts/report/index.html and report.md from artifacts/results.sqlite."""
    return {"actions": [_report], "uptodate": [False], "verbosity": 2}


def _export() -> object:
    from doit.exceptions import TaskFailed

    from ..errors import UserError
    from ..core.results import ResultStore

    fmt = doit_var("format", "json")
    try:
        out = artifacts_dir() / "report" / f"results.{fmt}"
        text = ResultStore(artifacts_dir() / "results.sqlite").export(fmt)
    except UserError as exc:
        return TaskFailed(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"results: {out}")
    return None


@params("format", format="json (default) or csv")
def task_results_export() -> dict:
    """Export every stored measurement to artifacts/report/results.<format> (json or csv)."""
    return {"actions": [_export], "uptodate": [False], "verbosity": 2}
