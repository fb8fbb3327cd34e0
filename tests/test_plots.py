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


def test_gradient_figure_colours_are_distinct_and_its_legend_is_off_the_curves(
    trained, tmp_path, monkeypatch
):
    _, callback = trained
    figures = []
    save = bs.plots._save
    monkeypatch.setattr(bs.plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    bs.plots.plot_gradient_contributions(callback, tmp_path / "g.png")
    left = figures[0].axes[0]
    solid = [line for line in left.get_lines() if line.get_linestyle() == "-"]
    colours = [str(line.get_color()) for line in solid]
    assert len(solid) > 5 and len(set(colours)) == len(colours)
    # The legend hangs below the axes, never over the curves.
    legend_box = left.get_legend().get_window_extent(figures[0].canvas.get_renderer())
    axes_box = left.get_window_extent(figures[0].canvas.get_renderer())
    assert legend_box.y1 <= axes_box.y0
    with pytest.raises(ValueError, match="`records`"):
        bs.plots.plot_gradient_contributions([], tmp_path / "x.png")


def test_gradient_figure_draws_the_kl_of_the_bayesian_layers_only(trained, tmp_path, monkeypatch):
    # The default U-Net is Bayesian in its bottleneck and head only: the
    # deterministic layers have no KL gradient, so neither a dashed line
    # nor a KL/NLL bar; the Bayesian layers come first in the legend.
    _, callback = trained
    model = callback.model
    bayesian = {layer.name for layer in bs.layers.bayesian_layers(model)}
    assert bayesian == {"bottleneck1_conv0", "bottleneck1_conv1", "logits"}
    figures = []
    save = bs.plots._save
    monkeypatch.setattr(bs.plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    bs.plots.plot_gradient_contributions(callback, tmp_path / "g.png", max_layers=20)
    left, right = figures[0].axes[:2]
    solid = [line.get_label() for line in left.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in left.get_lines() if line.get_linestyle() == "--"]
    assert solid[0] == "model (all)" and set(solid[1:4]) == bayesian
    assert len(solid) > 4 and len(dashed) == 1 + len(bayesian)
    assert {label.get_text() for label in right.get_yticklabels()} == bayesian


def test_plot_reliability_shows_foreground_ece_and_region(tmp_path, monkeypatch):
    import doctest

    import numpy as np

    rng = np.random.default_rng(0)
    p = np.where(rng.random((4, 32, 32)) < 0.1, rng.random((4, 32, 32)), 0.005)
    y = (rng.random(p.shape) < p).astype(float)
    summary = bs.metrics.foreground_calibration(y, p, num_bins=10)
    figures = []
    save = bs.plots._save
    monkeypatch.setattr(bs.plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    path = bs.plots.plot_reliability(y, p[..., None], tmp_path / "r.png", num_bins=10)
    assert open(path, "rb").read(8) == PNG_MAGIC
    top = figures[0].axes[0]
    title = top.get_title()
    assert f"Foreground ECE = {summary.ece:.4f}" in title
    assert f"n = {summary.region_size} " in title and "p_fg >= 0.02" in title
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(f"n = {summary.excluded_size}" in t and "mean p_fg 0.0050" in t for t in legend)
    # Bars: the foreground frequency of the region's bins only.
    region = p >= 0.02
    _, accuracy, counts = bs.metrics.reliability_curve(y[region], p[region], 10)
    heights = [bar.get_height() for bar in top.patches]
    np.testing.assert_allclose(heights, accuracy[counts > 0])
    # Softmax input: p_fg = 1 - p(background); an empty region draws too.
    probs = np.stack([1 - p, p * 0.5, p * 0.5], axis=-1)
    labels = y.astype(int) * rng.integers(1, 3, size=y.shape)
    bs.plots.plot_reliability(labels, probs, tmp_path / "m.png", num_bins=10)
    assert f"Foreground ECE = {summary.ece:.4f}" in figures[1].axes[0].get_title()
    bs.plots.plot_reliability(y, np.full(y.shape, 0.01), tmp_path / "e.png")
    assert "Foreground ECE = nan" in figures[2].axes[0].get_title()
    with pytest.raises(ValueError, match="`threshold`"):
        bs.plots.plot_reliability(y, p, tmp_path / "x.png", threshold=1.5)
    finder = doctest.DocTestFinder()
    (test,) = finder.find(bs.plots.plot_reliability, "plot_reliability", globs={})
    assert doctest.DocTestRunner().run(test).failed == 0


def test_series_figure_draws_the_threshold_and_a_close_up(tmp_path):
    import matplotlib.image
    import numpy as np

    x = np.sin(np.arange(600) / 5.0)[None, :, None]
    y = np.zeros((1, 600))
    y[0, 300] = 1
    mean = np.full((1, 600, 1), 1e-3)
    mean[0, 299:302] = 0.2
    pred = {"mean": mean, "epistemic": np.zeros((1, 600)), "aleatoric": np.ones((1, 600))}
    whole = bs.plots.plot_series_uncertainty(x, y, pred, tmp_path / "a.png", threshold=0.05)
    close = bs.plots.plot_series_uncertainty(
        x, y, pred, tmp_path / "b.png", threshold=0.05, steps=(250, 350)
    )
    for path in (whole, close):
        assert open(path, "rb").read(8) == PNG_MAGIC
        assert matplotlib.image.imread(path).shape[0] > 100
    with pytest.raises(ValueError, match="Argument `steps`"):
        bs.plots.plot_series_uncertainty(x, y, pred, tmp_path / "c.png", steps=(500, 700))
