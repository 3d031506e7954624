"""`doit report` (HTML + Markdown report from the results store) and `doit results_export`."""
from __future__ import annotations

from . import artifacts_dir, doit_var


def _report() -> None:
    from ..measure.report import write_report
    from ..measure.results import ResultStore

    html_path, md_path = write_report(ResultStore(artifacts_dir() / "results.sqlite"), artifacts_dir() / "report")
    print(f"report: {html_path}\nreport: {md_path}")


def task_report():
    """Write artifacts/report/index.html and report.md from artifacts/results.sqlite."""
    return {"actions": [_report], "uptodate": [False], "verbosity": 2}


def _export() -> object:
    from doit.exceptions import TaskFailed

    from ..errors import UserError
    from ..measure.results import ResultStore

    fmt = doit_var("format", "json")
    out = artifacts_dir() / "report" / f"results.{fmt}"
    try:
        text = ResultStore(artifacts_dir() / "results.sqlite").export(fmt)
    except UserError as exc:
        return TaskFailed(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"results: {out}")
    return None


def task_results_export():
    """Export every stored benchmark row to artifacts/report/results.<format> (format=json|csv)."""
    return {"actions": [_export], "uptodate": [False], "verbosity": 2}
