"""Checks that Keras runs on its TensorFlow backend before anything else loads."""

import keras


def check_backend() -> None:
    """Raise ``ImportError`` unless Keras uses the TensorFlow backend.

    bayesseg builds on TensorFlow Probability distributions and
    ``tf.distribute``; its layers do not run on JAX or PyTorch.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ImportError(
            "bayesseg requires Keras' TensorFlow backend, but Keras is using "
            f"backend={backend!r}. Set KERAS_BACKEND=tensorflow before importing "
            "keras (or edit ~/.keras/keras.json)."
        )
