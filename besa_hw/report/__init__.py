"""The run report (``RUN_DIR/report/``) and every figure: document.py builds the report,
render.py writes Markdown and HTML, figures.py draws a run's figures, explore.py the sweep and
compare figures, scales.py keeps ratio axes honest."""

from besa_hw.report.document import RunData, build_report, load_run, markdown_table

__all__ = ["RunData", "build_report", "load_run", "markdown_table"]
