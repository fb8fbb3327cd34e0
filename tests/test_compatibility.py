"""What users already depend on keeps working: import paths and saved models.

``fixtures/public_api.json`` is a snapshot of every public module's
``__all__`` as released before the package was restructured; every name in it
must still import from the same path. The ``saved_*.keras`` fixtures were
written by that release (see ``fixtures/make_saved_models.py``) and must
still load with ``safe_mode=True`` and predict what they predicted then.
"""

import importlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import bayesseg as bs

FIXTURES = Path(__file__).parent / "fixtures"
PUBLIC_API = json.loads((FIXTURES / "public_api.json").read_text())


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_every_released_public_name_still_imports(module_name):
    module = importlib.import_module(module_name)
    missing = [name for name in PUBLIC_API[module_name] if not hasattr(module, name)]
    assert missing == []
    exported = getattr(module, "__all__", None)
    if exported is not None:
        assert set(PUBLIC_API[module_name]) <= set(exported)


def _load(name):
    # Keras finds custom classes through its registry, which a module fills
    # when it is imported; bayesseg's submodules load lazily, so load them.
    for module_name in PUBLIC_API:
        importlib.import_module(module_name)
    model = keras.saving.load_model(FIXTURES / f"saved_{name}.keras", safe_mode=True)
    return model, np.load(FIXTURES / f"saved_{name}.npz")


@pytest.mark.parametrize("name", ["image", "volume", "series"])
def test_model_saved_before_the_restructure_loads_and_predicts_the_same(name):
    model, reference = _load(name)
    assert isinstance(model, bs.BayesianModel)
    assert isinstance(model.elbo, bs.ELBO)
    with bs.layers.sampling_mode(model, "mean"):
        np.testing.assert_allclose(model(reference["x"]).numpy(), reference["expected"], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["image", "volume", "series"])
def test_model_saved_before_the_restructure_still_trains(name):
    model, reference = _load(name)
    target = (reference["expected"] > reference["expected"].mean()).astype("float32")
    if name == "volume":
        target = np.argmax(reference["expected"], -1)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.train_on_batch(reference["x"], target)
    changed = [
        not np.array_equal(a, w.numpy())
        for a, w in zip(before, model.trainable_weights, strict=True)
    ]
    assert all(changed)


def test_saved_deep_ensemble_loads_and_predicts_the_same():
    """The first release with DeepEnsemble wrote this fixture (three kinds of member)."""
    model, reference = _load("ensemble")
    assert isinstance(model, bs.models.DeepEnsemble) and model.num_members == 3
    assert isinstance(model.members[2], bs.BayesianModel)
    with bs.layers.sampling_mode(model, "mean"):
        np.testing.assert_allclose(model(reference["x"]).numpy(), reference["expected"], atol=1e-6)
