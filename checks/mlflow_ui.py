"""The MLflow UI, in a real headless browser: a project's experiment opens on its training runs, where a
pipeline run shows its stage runs and a dataset.

Run by ``make check-ui`` (not by ``make test``: it needs Chromium, which pip cannot install; on Debian
``apt-get install chromium``, or set ``CHROMIUM`` to any Chromium or Chrome executable). It builds a fresh
copy of the reference project in a temporary folder, runs ``reprobook run`` with small params, starts
``mlflow server`` on 127.0.0.1 against the project's store, and drives the UI with Playwright. It exits 0
when every check passes, 1 with the failed check named, and leaves a screenshot of each page beside the
project (its path is printed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL = {"data": {"n_rows": 1500}, "model": {"cv_folds": 2}}


def _project(folder: Path) -> Path:
    """The reference project's tracked files in a fresh git repository, with small params."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    project = folder / "project"
    for relative in files:
        if (ROOT / relative).is_file():
            (project / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, project / relative)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=check", "-c", "user.email=check@localhost", "commit", "-qm", "copy"],
                    [str(BIN / "dvc"), "remote", "add", "--local", "-f", "-d", "storage", str(folder / "remote")]):
        subprocess.run(command, cwd=project, check=True, capture_output=True)
    return project


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"check-ui: mlflow server exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"check-ui: {url} did not answer within {timeout_s:.0f} s")


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")
    if not found:
        raise SystemExit("check-ui: no Chromium found; expected `chromium` on PATH or CHROMIUM=/path/to/chrome "
                         "(on Debian: apt-get install chromium)")
    return found


def main() -> int:
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    from reprobook.tracking.presentation import ui_path

    chromium = _chromium()
    folder = Path(tempfile.mkdtemp(prefix="reprobook-check-ui-"))
    project = _project(folder)
    print(f"check-ui: running the pipeline in {project}", flush=True)
    subprocess.run([str(BIN / "reprobook"), "run"], cwd=project, check=True, stdout=subprocess.DEVNULL)
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(yaml.safe_load((project / "params.yaml").read_text())
                                                ["tracking"]["experiment"])
    pipeline = client.search_runs([experiment.experiment_id], "tags.`reprobook.stage` = 'pipeline'")[0]
    port = _free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], cwd=project,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/health", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # The address `reprobook run` prints: MLflow 3.17's UI keeps a GenAI / Model training switch per
            # browser (GenAI on a first visit, which opens every experiment on its GenAI overview);
            # `workflowType=machine_learning` in the address opens the training runs whatever it holds.
            page.goto(f"{base}/{ui_path(experiment.experiment_id)}", wait_until="domcontentloaded")
            try:
                page.wait_for_selector(f"text={pipeline.info.run_name}", timeout=60000)
            except Exception:  # noqa: BLE001 - the failure is named below, with the screenshot
                pass
            page.screenshot(path=str(folder / "experiment.png"), full_page=True)
            text = page.inner_text("body")
            if "Detect Issues" in text or "Token Usage" in text or "/runs" not in page.url:
                failures.append(f"the experiment opened on {page.url}, not on its training runs")
            if pipeline.info.run_name not in text:
                failures.append(f"the runs table does not show the pipeline run '{pipeline.info.run_name}'")
            if "a reprobook project" not in text:
                failures.append("the experiment's description is not shown above its runs")
            modeling = client.search_runs([experiment.experiment_id], "tags.`reprobook.stage` = 'modeling'")[0]
            page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs/{modeling.info.run_id}",
                      wait_until="domcontentloaded")
            try:
                page.wait_for_selector("text=on the test rows", timeout=60000)
            except Exception:  # noqa: BLE001 - named below
                pass
            page.screenshot(path=str(folder / "modeling.png"), full_page=True)
            text = page.inner_text("body")
            if "train" not in text:
                failures.append("the modeling run's page shows no dataset 'train'")
            if "on the test rows" not in text:
                failures.append("the modeling run's page shows no description with its verdict")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"check-ui: screenshots in {folder}")
    for failure in failures:
        print(f"check-ui: FAILED: {failure}", file=sys.stderr)
    if not failures:
        print("check-ui: passed: the experiment opens on its training runs; the pipeline run, its modeling "
              "run's dataset and description are shown")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
