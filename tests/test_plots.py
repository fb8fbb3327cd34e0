"""Training and gradient figures from a real (tiny) BayesianModel run."""

import keras
import pytest

import bayesseg as bs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    images, masks = bs.data.synthetic_lesions(16, shape=(16, 16), seed=0)
    model = bs.models.bayesian_unet((16, 16, 1), 1, base_filters=4, depth=2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=bs.ELBO(bs.losses.WeightedBinaryCrossentropy(pos_weight=20.0), bs.kl.PerExample(16)),
    )
    callback = bs.diagnostics.GradientDiagnostics(every_n_steps=2)
    history = model.fit(
        images,
        masks,
        batch_size=4,
        epochs=3,
        validation_split=0.25,
        verbose=0,
        callbacks=[callback],
    )
    return history, callback


def test_plot_training_writes_png(trained, tmp_path):
    history, _ = trained
    path = bs.plots.plot_training(history, tmp_path / "training.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="`history`"):
        bs.plots.plot_training({"loss": [1.0]}, tmp_path / "x.png")


def test_plot_gradient_contributions_writes_png(trained, tmp_path):
    _, callback = trained
    assert [r["step"] for r in callback.records] == [0, 2, 4, 6, 8]  # 9 updates, every 2nd
    path = bs.plots.plot_gradient_contributions(callback, tmp_path / "gradients.png")
    assert open(path, "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="`records`"):
        bs.plots.plot_gradient_contributions([], tmp_path / "x.png")
