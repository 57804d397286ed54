"""Evaluation plots, each as a PNG (MLflow, reports) and a CSV (``dvc plots``), and shown inline.

Figures are drawn on bare matplotlib ``Figure`` objects, not through pyplot:
no global backend is chosen here, so a notebook keeps its own (inline in
Jupyter) and pyplot never shows a library figure a second time. A PNG is
written at a modest dpi without software metadata, so the same data give the
same bytes; :func:`show` puts those very bytes in the notebook, so the
executed report and its HTML show the plots and stay byte-identical across runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

FIGSIZE = (5, 4)
DPI = 100
PNG_METADATA = {"Software": None}
"""No matplotlib version in the PNG: the bytes depend on the data, not on the installation."""


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    return fig, fig.subplots()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG whose bytes depend on the figure only (fixed dpi, no software metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png", metadata=PNG_METADATA)
    return path


def show(paths: Iterable[str | Path]) -> None:
    """Display the PNGs among ``paths`` inline (Jupyter, and the executed report); other files are skipped.

    The saved file's bytes are displayed as they are, so what the report shows
    is what MLflow and ``dvc plots`` get, and the report's bytes are as stable
    as the PNG's.
    """
    from IPython.display import Image, display

    for path in paths:
        if Path(path).suffix.lower() == ".png":
            display(Image(data=Path(path).read_bytes(), format="png"))


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return path


def roc(y_true, score, positive, out: Path) -> list[Path]:
    fpr, tpr, _ = roc_curve(y_true == positive, score)
    fig, ax = _figure()
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    return [save_figure(fig, out / "roc.png"), _csv(pd.DataFrame({"fpr": fpr, "tpr": tpr}), out / "roc.csv")]


def precision_recall(y_true, score, positive, out: Path) -> list[Path]:
    precision, recall, _ = precision_recall_curve(y_true == positive, score)
    fig, ax = _figure()
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    frame = pd.DataFrame({"recall": recall, "precision": precision})
    return [save_figure(fig, out / "precision_recall.png"), _csv(frame, out / "precision_recall.csv")]


def confusion(y_true, y_pred, out: Path) -> list[Path]:
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    fig, ax = _figure()
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="actual", title="Confusion matrix")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    pairs = pd.DataFrame({"actual": np.asarray(y_true), "predicted": np.asarray(y_pred)})
    return [save_figure(fig, out / "confusion.png"), _csv(pairs, out / "confusion.csv")]


def residuals(y_true, y_pred, out: Path) -> list[Path]:
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    fig, ax = _figure()
    ax.scatter(y_pred, y_true - y_pred, s=8, alpha=0.6)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals")
    frame = pd.DataFrame({"predicted": y_pred, "actual": y_true, "residual": y_true - y_pred})
    return [save_figure(fig, out / "residuals.png"), _csv(frame, out / "residuals.csv")]


def evaluation_plots(task: str, y_true, y_pred, scores, classes, out: Path) -> list[Path]:
    """The plots that fit the task: ROC/PR/confusion, or residuals."""
    if task == "regression":
        return residuals(y_true, y_pred, out)
    paths = confusion(y_true, y_pred, out)
    if scores is not None and len(classes) == 2:
        paths += roc(y_true, scores[:, 1], classes[1], out) + precision_recall(y_true, scores[:, 1], classes[1], out)
    return paths
