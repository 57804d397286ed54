"""Store and load models without unpickling: skops files, byte-stable, with an explicit trust list.

Why skops: loading a pickle (joblib, cloudpickle) runs whatever code the file
names, so a model file from a shared cache, a DVC remote or a tracking store
is code its reader executes. A skops file is a zip of JSON and ``.npy``
arrays; :func:`load_model` instantiates only the types skops trusts itself
and the data classes of :func:`is_trusted_by_default`, plus those listed in
``model.trusted_types`` in ``params.yaml``; for any other it names the type
and that key.

Why the bytes are rewritten: skops names array entries after ``id()`` of the
objects (memory addresses) or random UUIDs, and stamps each zip entry with
the current time, so the same model gave different files on every save, a
new hash in ``dvc.lock`` and a dirty git tree. :func:`stable_skops_bytes`
renumbers those names in the order the schema lists them and fixes the
timestamps: the same model always gives the same bytes.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reprobook.errors import ReprobookError

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's epoch


class UntrustedModel(ReprobookError):
    """A model file names types that are neither trusted by default nor listed in model.trusted_types."""


OWN_ENCODERS = "reprobook.ml.encoders"
OWN_TRANSFORMERS = ("DatetimeFeatures", "CategoryText", "TextVectors")
"""reprobook's own encoders: classes that hold only data and scikit-learn objects, trusted like scikit-learn's."""


def is_trusted_by_default(type_name: str) -> bool:
    """Whether a type a skops file names may be instantiated without the user's say-so.

    skops builds objects by calling the named type with recorded arguments, so
    any trusted *callable* that touches the system is a way in (``numpy.save``
    writes files, ``numpy.memmap`` creates them, ``builtins.eval`` ...). Trusted
    by default are therefore only classes that rebuild data: scikit-learn's
    classes (estimators and their fitted parts), reprobook's own encoders
    (:data:`OWN_TRANSFORMERS`), NumPy's dtypes and scalar types, and SciPy's
    sparse matrices. Everything else must be listed in
    ``model.trusted_types``.
    """
    import importlib

    module, _, attribute = type_name.rpartition(".")
    if module == OWN_ENCODERS:
        return attribute in OWN_TRANSFORMERS
    package = module.split(".", 1)[0]
    if package not in ("sklearn", "numpy", "scipy"):
        return False
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    if not isinstance(found, type):
        return False
    if package == "numpy":
        import numpy as np

        return issubclass(found, (np.dtype, np.generic))
    if package == "scipy":
        return module.startswith("scipy.sparse")
    return True


def untrusted_types(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """Types ``data`` would instantiate that neither the defaults nor ``trusted`` allow."""
    import skops.io

    return _refused(skops.io.get_untrusted_types(data=data), trusted)


def _refused(named: Iterable[str], trusted: Iterable[str]) -> list[str]:
    allowed = set(trusted)
    return sorted(t for t in named if t not in allowed and not is_trusted_by_default(t))


def trusted_types(data: bytes, trusted: Iterable[str] = ()) -> list[str]:
    """The full trust list for loading ``data`` (one audit of the file); raise :class:`UntrustedModel` naming
    what is missing."""
    import skops.io

    named = list(skops.io.get_untrusted_types(data=data))
    refused = _refused(named, trusted)
    if refused:
        raise UntrustedModel(
            f"the model contains types reprobook does not load without your say-so: {', '.join(refused)}. "
            "If you wrote or trust that code, list them in params.yaml under model.trusted_types "
            f"(for example: trusted_types: [{refused[0]}])"
        )
    return named


def model_bytes(model: Any) -> bytes:
    """The skops serialisation of ``model``, byte-stable (see the module docstring).

    A type skops cannot serialise without pickle (a lambda, an open file) is a
    :class:`ReprobookError` naming it, not a pickle written in its place.
    """
    import skops.io

    try:
        raw = skops.io.dumps(model)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReprobookError(
            f"the model cannot be stored as a skops file: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "Every part of the pipeline must be a class importable by name (no lambdas or local functions)"
        ) from None
    return stable_skops_bytes(raw)


def save_model(model: Any, path: Path, *, trusted: Iterable[str] = (), joblib_copy: bool = False) -> Path:
    """Write ``model`` to ``path`` (a ``.skops`` file); refuse now a model that could not be loaded later.

    ``joblib_copy`` also writes ``<path>.joblib`` beside it, for tools that
    want a pickle; only where the user chose it (``model.joblib_copy``).
    """
    data = model_bytes(model)
    trusted_types(data, trusted)  # fail in the modeling stage, not in the next one
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    copy = path.with_suffix(".joblib")
    if joblib_copy:
        import joblib

        joblib.dump(model, copy)
    else:
        copy.unlink(missing_ok=True)
    return path


def load_model(path: Path, trusted: Iterable[str] = ()) -> Any:
    """Load a model saved by :func:`save_model`, instantiating trusted types only."""
    import skops.io

    if not path.is_file():
        raise ReprobookError(f"{path}: model not found; run the modeling stage first (dvc repro modeling)")
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ReprobookError(f"{path}: not a skops model file (a pickle is never loaded: it could run any code); "
                             "rerun the modeling stage to write it again")
    return skops.io.loads(data, trusted=trusted_types(data, trusted))


def stable_skops_bytes(raw: bytes) -> bytes:
    """Rewrite a skops zip so that equal models give equal bytes.

    Object ids (``__id__``) and entry names (``<id>.npy``, ``<uuid>.bin``) are
    renumbered in the order the schema first mentions them; entries are
    written in that order with a fixed timestamp. Nested ``.npz`` archives
    (SciPy sparse matrices) get the same fixed timestamps.
    """
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        schema = json.loads(source.read("schema.json"))
        numbers: dict[str, int] = {}

        def number(key: str) -> int:
            return numbers.setdefault(key, len(numbers) + 1)

        renamed: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int):
                        out[key] = number(str(value))
                    elif key == "file" and isinstance(value, str):
                        stem, _, suffix = value.partition(".")
                        out[key] = renamed.setdefault(value, f"{number(stem)}.{suffix}")
                    else:
                        out[key] = walk(value)
                return out
            if isinstance(node, list):
                return [walk(item) for item in node]
            return node

        schema = walk(schema)
        target = io.BytesIO()
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as out:
            _write(out, "schema.json", json.dumps(schema, indent=2).encode())
            for old, new in renamed.items():
                content = source.read(old)
                _write(out, new, _stable_zip(content) if new.endswith(".npz") else content)
            # An entry the schema does not name (none in skops 0.16) is kept as it is, never dropped.
            for name in sorted(set(source.namelist()) - set(renamed) - {"schema.json"}):
                _write(out, name, source.read(name))
    return target.getvalue()


def _stable_zip(raw: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        target = io.BytesIO()
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as out:
            for name in sorted(source.namelist()):
                _write(out, name, source.read(name))
    return target.getvalue()


def _write(archive: zipfile.ZipFile, name: str, content: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    archive.writestr(info, content)


def is_type_name(value: str) -> bool:
    """A dotted Python path, as ``model.trusted_types`` entries must be."""
    return re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", value) is not None
