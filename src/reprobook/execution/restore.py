"""Put back the last good outputs of a stage that failed under ``dvc repro``.

DVC deletes a stage's outputs before running it and leaves ``dvc.lock``
unchanged when it fails, so the lock still names the last good version of
each output. Cached outputs come back from the DVC cache (``dvc checkout``);
outputs kept in git (``cache: false`` metrics) come back from the commit when
the committed file is the version the lock records. Run after DVC has exited:
it holds the repository lock while it runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from reprobook.tracking.store import file_digest


def _locked_outs(root: Path) -> dict[str, list[dict]]:
    import yaml

    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    return {name: entry.get("outs", []) for name, entry in stages.items()}


def missing_outputs(root: Path) -> dict[str, list[str]]:
    """Stage -> outputs the lock records that are not in the workspace."""
    missing: dict[str, list[str]] = {}
    for stage, outs in _locked_outs(root).items():
        gone = [out["path"] for out in outs if not (root / out["path"]).exists()]
        if gone:
            missing[stage] = gone
    return missing


def restore_last_good(root: Path, dvc: str) -> list[str]:
    """Restore what a failed run deleted; return the paths now back, as the lock records them."""
    missing = missing_outputs(root)
    if not missing:
        return []
    subprocess.run([dvc, "checkout", "--force", "--quiet", *missing], cwd=root, capture_output=True)
    locked = {out["path"]: out for outs in _locked_outs(root).values() for out in outs}
    for paths in missing.values():
        for path in paths:
            target = root / path
            if target.exists() or "md5" not in locked[path]:
                continue
            shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True)
            if shown.returncode == 0:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(shown.stdout)
                if file_digest(target) != locked[path]["md5"]:
                    target.unlink()  # the commit holds another version, not the last good one
    return sorted(p for paths in missing.values() for p in paths if (root / p).exists())
