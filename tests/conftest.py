import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so MirroredStrategy tests can run 2 replicas on one
# machine. This must happen before TensorFlow initialises its runtime.
_cpus = tf.config.list_physical_devices("CPU")
if _cpus:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )


def _has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip_gpu = pytest.mark.skip(reason="needs a GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module", autouse=True)
def _fresh_keras_session():
    # Once per test module, not per test: clearing the session costs ~0.25 s
    # and throws away every traced function. Tests that depend on Keras'
    # auto-generated layer names must name their layers.
    keras.backend.clear_session()
    yield


@pytest.fixture(autouse=True)
def _fixed_seed():
    # Layer seeds default to draws from Python's `random`, seeded here: every
    # test builds the same layers whatever ran before it.
    keras.utils.set_random_seed(1234)
    yield
