"""Models as skops files: byte-stable, never unpickled, loaded under an explicit trust policy."""

from __future__ import annotations

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from reprobook.errors import ReprobookError
from reprobook.ml.persistence import load_model


def test_the_model_file_is_byte_stable_and_loads_to_the_same_predictions(tmp_path):
    """skops names entries after memory addresses and stamps them with the time: the same model must give the
    same bytes in another process, or dvc.lock changes on every run."""
    import subprocess
    import sys

    script = (
        "import sys; from sklearn.datasets import load_breast_cancer; "
        "from sklearn.ensemble import HistGradientBoostingClassifier; from sklearn.pipeline import make_pipeline; "
        "from sklearn.preprocessing import StandardScaler; from reprobook.ml.persistence import save_model; "
        "x, y = load_breast_cancer(return_X_y=True, as_frame=True); "
        "model = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=20, random_state=0)).fit(x, y); "
        "save_model(model, __import__('pathlib').Path(sys.argv[1]), joblib_copy=sys.argv[2] == 'copy')"
    )
    for name, copy in (("a", "copy"), ("b", "")):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}/model.skops"), copy], check=True)
    assert (tmp_path / "a/model.skops").read_bytes() == (tmp_path / "b/model.skops").read_bytes()
    assert (tmp_path / "a/model.joblib").is_file() and not (tmp_path / "b/model.joblib").exists()
    x, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    import joblib

    assert (load_model(tmp_path / "a/model.skops").predict_proba(x) == joblib.load(tmp_path / "a/model.joblib").predict_proba(x)).all()


def test_a_pickle_in_place_of_the_model_is_refused(tmp_path):
    import joblib

    path = tmp_path / "model.skops"
    joblib.dump(LogisticRegression(), path)
    with pytest.raises(ReprobookError, match="not a skops model file .*never loaded"):
        load_model(path)


@pytest.mark.parametrize("name", ["builtins.eval", "numpy.save", "numpy.memmap", "os.system", "sklearn.nosuch.Thing"])
def test_callables_that_touch_the_system_are_not_trusted_by_default(name):
    from reprobook.ml.persistence import is_trusted_by_default

    assert not is_trusted_by_default(name)
    assert is_trusted_by_default("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
    assert is_trusted_by_default("numpy.dtype")
