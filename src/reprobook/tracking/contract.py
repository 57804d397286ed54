"""The serving contract of a model version: the input columns a caller must send.

Versions of one registered name may read different columns (a leaking column
dropped, a new feature added): that is daily work, and the registry does not
refuse it. What it changes is what callers of ``NAME@champion`` must send. A
column the champion did not read and the new version does is an *added* input:
a caller that sends the champion's columns would be refused, so that is a
contract change that needs a human's consent before the version serves
(``reprobook deploy promote --accept-contract-change``). A column the champion
read and the new version does not is *removed*: callers may keep sending it
(extra columns are ignored), so it is reported as information only.

The input columns of a modeling run are a run tag (:data:`TAG_INPUTS`, set when
the model is logged) or, for runs logged before it existed, the input schema of
the run's logged model (its ``MLmodel`` signature). Plain Python and JSON here:
the outer stage process and ``reprobook compare`` import this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG_CONTRACT = "reprobook.contract_change"
"""Version and run tag: JSON ``{"added": [...], "removed": [...], "champion_version": "N"}`` against the champion."""
TAG_INPUTS = "reprobook.inputs"
"""Run tag: JSON list of the logged model's input columns, in order (absent when it would pass MLflow's limit)."""
ACCEPT_FLAG = "--accept-contract-change"

MAX_RUN_TAG = 8000
"""MLflow's limit on a run tag value (``mlflow.utils.validation.MAX_TAG_VAL_LENGTH``)."""
_LISTED = 10


@dataclass(frozen=True)
class ContractChange:
    """Input columns a version reads beyond the champion's (``added``) and the champion's it no longer reads."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    champion_version: str | None = None

    @property
    def needs_consent(self) -> bool:
        """Only added inputs break callers: a removed one is sent and ignored."""
        return bool(self.added)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def short(self) -> str:
        """``+timestamp_ms −id``: the change in one token per column (at most ten of each listed)."""
        if not self.changed:
            return "same inputs"
        return " ".join([*_signed("+", self.added), *_signed("−", self.removed)])

    def describe(self, accepted: bool = False) -> str:
        """The change in a sentence, for a promotion reason (``accepted``: consent was given for it)."""
        against = f"version {self.champion_version}" if self.champion_version else "the champion"
        parts = []
        if self.added:
            consent = f" (accepted with {ACCEPT_FLAG})" if accepted else ""
            parts.append(f"serving contract change{consent}: needs input column(s) {listing(self.added)} that "
                         f"{against} does not read, so callers must send them")
        if self.removed:
            parts.append(f"no longer reads {listing(self.removed)} (callers may keep sending them; they are ignored)")
        return "; ".join(parts) if parts else f"same input columns as {against}"

    def tag(self) -> str:
        """JSON for :data:`TAG_CONTRACT`, lists cut (and counted) to fit MLflow's run tag limit."""
        return fit_json({"added": list(self.added), "removed": list(self.removed),
                         "champion_version": self.champion_version}, ("added", "removed"))


def diff(champion: Sequence[str], candidate: Sequence[str], champion_version: str | None = None) -> ContractChange:
    """Columns ``candidate`` reads that ``champion`` does not (in the candidate's order), and the reverse."""
    before, after = set(champion), set(candidate)
    return ContractChange(tuple(c for c in candidate if c not in before), tuple(c for c in champion if c not in after),
                          champion_version)


def refusal(name: str, version: str, champion_version: str, change: ContractChange) -> str:
    """The one-line refusal of a promotion that changes the contract without consent."""
    return (f"version {version} of '{name}' needs input column(s) {listing(change.added)} that the champion "
            f"(version {champion_version}) does not read, so callers that send the champion's columns would be "
            f"refused; once they send them, promote with {ACCEPT_FLAG} (no alias was changed)")


def inputs_tag(columns: Sequence[str]) -> str | None:
    """JSON for :data:`TAG_INPUTS`, or None when it would not fit (the signature still lists them)."""
    text = json.dumps([str(c) for c in columns])
    return text if len(text) <= MAX_RUN_TAG else None


def parse_inputs(text: str | None) -> tuple[str, ...] | None:
    """The columns of a :data:`TAG_INPUTS` value; None when absent or not a JSON list of names."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return tuple(str(c) for c in value) if isinstance(value, list) else None


def signature_inputs(mlmodel: Path) -> tuple[str, ...]:
    """The named input columns of an ``MLmodel`` file's signature (empty without a column signature)."""
    import yaml

    meta = yaml.safe_load(mlmodel.read_text()) or {}
    inputs = (meta.get("signature") or {}).get("inputs")
    return tuple(str(spec["name"]) for spec in json.loads(inputs) if "name" in spec) if inputs else ()


def run_inputs(client, run_id: str, tags: dict[str, str] | None = None) -> tuple[str, ...] | None:
    """The input columns of a run's model: its :data:`TAG_INPUTS` tag, else its logged model's signature.

    None when the run logged no model (another stage) or its model records no
    columns. A run logs one model; with several, the last one logged is read.
    """
    if tags is None:
        tags = dict(client.get_run(run_id).data.tags)
    tagged = parse_inputs(tags.get(TAG_INPUTS))
    if tagged is not None:
        return tagged
    try:
        outputs = client.get_run(run_id).outputs
        model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
        return _logged_model_inputs(client, model_ids[-1]) if model_ids else None
    except Exception:  # noqa: BLE001  an unreadable model is "unknown" here, never a failed comparison
        return None


def _logged_model_inputs(client, model_id: str) -> tuple[str, ...] | None:
    import tempfile

    import mlflow.artifacts

    location = client.get_logged_model(model_id).artifact_location.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="reprobook-signature-") as scratch:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=scratch,
                                                   tracking_uri=client.tracking_uri)
        return signature_inputs(Path(path)) or None


def listing(columns: Sequence[str]) -> str:
    """``'a', 'b' and 3 more``: column names quoted, at most ten."""
    shown = ", ".join(f"'{c}'" for c in columns[:_LISTED])
    return shown if len(columns) <= _LISTED else f"{shown} and {len(columns) - _LISTED} more"


def fit_json(payload: dict[str, Any], lists: Sequence[str], limit: int = MAX_RUN_TAG) -> str:
    """``payload`` as JSON; past ``limit``, its ``lists`` are cut (halved until it fits) and ``<key>_count`` says how
    long they were, so a tag on a very wide table is still set, and says so."""
    text = json.dumps(payload)
    keep = max((len(payload[key]) for key in lists), default=0)
    while len(text) > limit and keep > 0:
        keep //= 2
        cut = {**payload, **{key: payload[key][:keep] for key in lists},
               **{f"{key}_count": len(payload[key]) for key in lists}}
        text = json.dumps(cut)
    return text


def _signed(sign: str, columns: Sequence[str]) -> list[str]:
    shown = [f"{sign}{c}" for c in columns[:_LISTED]]
    return shown + ([f"({sign}{len(columns) - _LISTED} more)"] if len(columns) > _LISTED else [])
