"""What a person reads: plots shown inline, an offline `dvc plots show` page, a readable parameters cell.

Fast checks on the pieces; tests/test_framework_e2e.py checks the same on real
executed projects (both tasks).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from reprobook.ml import plots


def _displayed(monkeypatch) -> list:
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **_: shown.extend(objects))
    return shown


# ---------------------------------------------------------------- A: plots inline, PNG kept, same bytes


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_evaluation_plots_are_shown_inline_with_the_bytes_of_the_saved_png(tmp_path, monkeypatch, task):
    rng = np.random.default_rng(0)
    if task == "classification":
        y_true = rng.integers(0, 2, 200)
        scores = np.column_stack([1 - (p := rng.random(200)), p])
        y_pred, classes = (p > 0.5).astype(int), [0, 1]
    else:
        y_true, y_pred, scores, classes = rng.normal(size=200), rng.normal(size=200), None, None
    first = plots.evaluation_plots(task, y_true, y_pred, scores, classes, tmp_path / "a")
    again = plots.evaluation_plots(task, y_true, y_pred, scores, classes, tmp_path / "b")
    pngs = [p for p in first if p.suffix == ".png"]
    assert pngs and all(p.is_file() for p in first)
    for a, b in zip(first, again):
        assert a.read_bytes() == b.read_bytes(), f"{a.name}: two identical calls gave different bytes"
    for png in pngs:
        assert b"Software" not in png.read_bytes() and b"Matplotlib" not in png.read_bytes()
        assert png.stat().st_size < 60_000, f"{png.name}: {png.stat().st_size} bytes is too heavy for a report"

    shown = _displayed(monkeypatch)
    plots.show(first)
    assert [image.data for image in shown] == [p.read_bytes() for p in pngs]  # CSVs are not shown
    assert all(image._repr_png_() for image in shown)


def test_library_plots_leave_the_notebooks_matplotlib_backend_alone(tmp_path):
    """Jupyter's inline backend must survive the stage notebooks' imports and plots (it was forced to Agg)."""
    code = f"""
import matplotlib
matplotlib.use("svg")
import numpy as np
from reprobook.ml import plots, error_analysis
from reprobook.project import context
import reprobook.quality.plots
plots.residuals(np.arange(10.0), np.arange(10.0)[::-1], __import__("pathlib").Path({str(tmp_path)!r}))
print(matplotlib.get_backend())
"""
    backend = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert backend == "svg"


def test_drift_plots_are_pngs_without_software_metadata(tmp_path):
    import pandas as pd

    from reprobook import quality

    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
    current = pd.DataFrame({"x": rng.normal(2, 1, size=500), "c": rng.choice(["a", "b"], 500)})
    report = quality.detect_drift(reference, current)
    written = report.plot(tmp_path / "one")
    assert [p.name for p in written] == ["drift_summary.png", "drift_x.png"]
    for path, again in zip(written, report.plot(tmp_path / "two")):
        assert path.read_bytes() == again.read_bytes() and b"Matplotlib" not in path.read_bytes()


# ---------------------------------------------------------------- B: dvc plots page and plot definitions


def test_plots_page_carries_vega_inline_and_no_cdn_script():
    from reprobook.project import plots_page

    page = plots_page.page()
    assert page == plots_page.page(), "the page must be the same bytes every time (it is committed)"
    assert "{plot_divs}" in page and "{scripts}" not in page  # no {scripts}: DVC's CDN <script> tags stay out
    assert not re.findall(r"<script[^>]*\bsrc=", page)
    assert "window.vegaEmbed=" in page.replace(" ", "")
    assert page.count("</script>") == 1


@pytest.mark.parametrize(("task", "classes", "written"), [
    ("classification", 2, {"roc.csv", "precision_recall.csv", "confusion.csv"}),
    ("classification", 3, {"confusion.csv"}),
    ("regression", None, {"residuals.csv"}),
])
def test_dvc_yaml_declares_the_plots_the_modeling_stage_writes(tmp_path, task, classes, written):
    """A declared plot whose file the stage does not write makes `dvc plots show` fail to load it."""
    from reprobook.project import plots_page
    from reprobook.project.scaffold import ProjectSpec, render

    render(ProjectSpec(name="x", task=task, classes=classes), tmp_path, reference_only=True)
    declared = set()
    for entry in yaml.safe_load((tmp_path / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, str):
            declared.add(entry)
        else:
            (definition,) = entry.values()
            declared.update(definition["y"])
    modeling = {Path(p).name for p in declared if p.startswith("reports/modeling/plots/")}
    assert modeling == written | {name.replace(".csv", ".png") for name in written}
    assert (tmp_path / plots_page.PAGE).is_file()


def test_reference_project_uses_the_offline_page():
    from configparser import ConfigParser

    from reprobook.project import plots_page
    from reprobook.project.scaffold import REFERENCE_FILES

    root = Path(__file__).resolve().parents[1]
    config = ConfigParser()
    config.read(root / ".dvc/config")
    assert config["plots"]["html_template"] == plots_page.SETTING
    assert (root / ".dvc" / plots_page.SETTING).resolve() == (root / plots_page.PAGE).resolve()
    assert plots_page.PAGE in REFERENCE_FILES


# ---------------------------------------------------------------- C: the injected parameters cell


PARAMS = {
    "params": {
        "data": {"source": "builtin:loans", "target": "approved", "drop_columns": [], "test_size": 0.2,
                 "drift": {"alpha": 0.05, "numeric_tests": ["ks", "psi", "jensen_shannon", "hellinger", "wasserstein"]},
                 "schema_file": None, "stratify": True, "note": 'say "hi"\n', "ratio": float("inf")},
        "model": {"params": {"max_depth": 4}, "seed": 42},
    },
    "project_dir": ".",
}


def test_injected_parameters_are_one_key_a_line_and_the_same_values():
    from papermill.translators import translate_parameters

    from reprobook.execution.notebook import KERNEL_NAME, use_papermill_extensions

    use_papermill_extensions()
    text = translate_parameters(KERNEL_NAME, "python", PARAMS, "Parameters")
    assert text == translate_parameters(KERNEL_NAME, "python", PARAMS, "Parameters")
    lines = text.splitlines()
    assert len(lines) > 15 and max(map(len, lines)) <= 100, text
    assert '        "source": "builtin:loans",' in lines
    namespace: dict = {}
    exec(compile(ast.parse(text), "<parameters>", "exec"), namespace)
    assert namespace["params"] == PARAMS["params"] and namespace["project_dir"] == "."
    # other kernels keep papermill's own translation
    assert translate_parameters("python3", "python", {"a": {"b": 1}}, "Parameters").count("\n") == 2


def test_a_print_cut_into_two_stream_messages_gives_the_report_of_one(tmp_path):
    """The kernel flushes output on a timer: under load one print arrives as its text and its newline."""
    import nbformat

    from reprobook.execution.notebook import normalize

    def executed(outputs):
        cell = nbformat.v4.new_code_cell("print(summary)", outputs=[nbformat.from_dict(o) for o in outputs])
        return nbformat.writes(normalize(nbformat.v4.new_notebook(cells=[cell]), tmp_path))

    whole = executed([{"output_type": "stream", "name": "stdout", "text": "missing cells: 0.83%\n"}])
    cut = executed([{"output_type": "stream", "name": "stdout", "text": "missing cells: 0.83%"},
                    {"output_type": "stream", "name": "stdout", "text": "\n"}])
    assert cut == whole
    mixed = executed([{"output_type": "stream", "name": "stdout", "text": "a\n"},
                      {"output_type": "stream", "name": "stderr", "text": "warning\n"},
                      {"output_type": "stream", "name": "stdout", "text": "b\n"}])
    assert mixed.count('"output_type": "stream"') == 3  # other streams in between stay apart
