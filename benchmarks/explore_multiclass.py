"""The search behind the many-class recipe: one training configuration per run.

Trains the demo's U-Net (``bs.recipes.build_segmentation_model``: the
Bayesian U-Net, the weighted ELBO, Adam with ``global_clipnorm=1``) on the
32-class synthetic task (64x64, 99% background, training seed ``--seed``,
200 held-out images of seed ``--seed + 10000``) with the options given, and
prints one JSON line: the mean per-class recall and Dice over the
foreground classes present, the count at recall 0, the background recall,
per-class recalls, from the mean of ``--samples`` Monte Carlo draws, both as
trained (``raw``) and after undoing the class weights (``corrected``,
``p_c / w_c`` renormalised), and the training seconds.

Beyond the demo's options it tries what the recipe was chosen against:
``--patch P --foreground-fraction F`` (random P x P patches, a share F of
them centred near a random foreground pixel, redrawn every epoch; weights
and bias from the patches' counts; evaluated on whole images), ``--dice W``
(``DiceLoss`` over the foreground classes plus the weighted cross-entropy
with weight ``1/W``), ``--normalization batch``, ``--bayesian-blocks none``.
``--tree-reference`` instead asks how much the images say: a
scikit-learn gradient-boosted tree (``HistGradientBoostingClassifier``)
trained on the 5x5 neighbourhood of every foreground pixel of the training
images names the class of the held-out foreground pixels (no background,
no network); it prints the mean per-class recall.
``benchmarks/RESULTS.md`` lists the runs and what each showed;
``bench_multiclass.py`` measures the chosen recipe through the demo itself.

Run: python benchmarks/explore_multiclass.py --learning-rate 1e-2 --lr-schedule cosine
      --num-images 640 --epochs 10 [--jsonl results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bayesseg as bs  # noqa: E402

NUM_CLASSES = 32
SIZE = 64


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--num-images", type=int, default=160)
    add("--num-test-images", type=int, default=200)
    add("--epochs", type=int, default=12)
    add("--learning-rate", type=float, default=1e-3)
    add("--lr-schedule", choices=("constant", "cosine"), default="constant")
    add("--class-weights", default="inverse_sqrt")
    add("--base-filters", type=int, default=8)
    add("--depth", type=int, default=3)
    add("--normalization", default="none")
    add("--batch-size", type=int, default=8)
    add("--patch", type=int, default=0, help="patch side; 0 trains on whole images")
    add("--foreground-fraction", type=float, default=0.0)
    add("--patches-per-image", type=int, default=1)
    add("--bayesian-blocks", default="all")
    add("--dice", type=float, default=0.0, help="add a Dice term; CE weight 1/dice")
    add("--samples", type=int, default=8)
    add("--seed", type=int, default=0)
    add("--jsonl", default=None, help="append the result line to this file")
    add("--tree-reference", action="store_true", help="the tree on pixel neighbourhoods")
    return parser


def _patches(args, x, y, rng):
    """One epoch's patches (or the whole images)."""
    if not args.patch:
        return x, y
    side = args.patch
    xs, ys = [], []
    for image, mask in zip(x, y, strict=True):
        foreground = np.argwhere(mask > 0)
        for _ in range(args.patches_per_image):
            if len(foreground) and rng.random() < args.foreground_fraction:
                centre = foreground[rng.integers(len(foreground))]
                jitter = rng.integers(-side // 4, side // 4 + 1, 2)
                origin = np.clip(centre - side // 2 + jitter, 0, SIZE - side)
            else:
                origin = rng.integers(0, SIZE - side + 1, 2)
            window = (slice(origin[0], origin[0] + side), slice(origin[1], origin[1] + side))
            xs.append(image[window])
            ys.append(mask[window])
    return np.stack(xs), np.stack(ys)


def _scores(labels, mean) -> dict:
    """Mean per-class recall / Dice of argmax(mean) over the foreground classes present."""
    hard = mean.argmax(-1)
    recalls, dices = [], []
    for c in range(1, NUM_CLASSES):
        support = int((labels == c).sum())
        if support == 0:
            continue
        tp = int(((hard == c) & (labels == c)).sum())
        fp = int(((hard == c) & (labels != c)).sum())
        recalls.append(tp / support)
        dices.append(2 * tp / (tp + fp + support))
    background = labels == 0
    return {
        "recall": float(np.mean(recalls)),
        "dice": float(np.mean(dices)),
        "zero": int(sum(r == 0 for r in recalls)),
        "present": len(recalls),
        "background_recall": float((hard[background] == 0).mean()),
        "per_class_recall": [round(r, 3) for r in recalls],
    }


def _neighbourhoods(x, y, radius: int = 2):
    """The (2r+1)^2 intensities around every foreground pixel, and its class."""
    padded = np.pad(x[..., 0], ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    index = np.argwhere(y > 0)
    offsets = range(-radius, radius + 1)
    features = [
        padded[index[:, 0], index[:, 1] + dy + radius, index[:, 2] + dx + radius]
        for dy in offsets
        for dx in offsets
    ]
    return np.stack(features, 1), y[y > 0]


def _tree_reference(x, y, xt, yt) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, labels = _neighbourhoods(x, y)
    test_features, test_labels = _neighbourhoods(xt, yt)
    start = time.perf_counter()
    tree = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(features, labels)
    predicted = tree.predict(test_features)
    recalls = [
        float(np.mean(predicted[test_labels == c] == c))
        for c in range(1, NUM_CLASSES)
        if (test_labels == c).any()
    ]
    return {
        "foreground_pixel_recall": float(np.mean(recalls)),
        "zero": int(sum(r == 0 for r in recalls)),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    args = _parser().parse_args()
    keras.utils.set_random_seed(args.seed)
    data = {"num_classes": NUM_CLASSES, "background_fraction": 0.99}
    x, y = bs.data.synthetic_multiclass_masks(args.num_images, (SIZE, SIZE), seed=args.seed, **data)
    xt, yt = bs.data.synthetic_multiclass_masks(
        args.num_test_images, (SIZE, SIZE), seed=args.seed + 10_000, **data
    )
    if args.tree_reference:
        print(json.dumps({"num_images": args.num_images, **_tree_reference(x, y, xt, yt)}))
        return
    rng = np.random.default_rng(args.seed)
    px, py = _patches(args, x, y, rng)
    counts = bs.imbalance.count_classes(py, num_classes=NUM_CLASSES)
    steps_per_epoch = math.ceil(len(px) / args.batch_size)
    # The posterior's start and scale multiplier: SegmentationConfig's defaults.
    config = bs.recipes.SegmentationConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        base_filters=args.base_filters,
        depth=args.depth,
        normalization=args.normalization,
        bayesian_blocks=args.bayesian_blocks,
        estimator="flipout",
        class_weights=args.class_weights,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        clipnorm=1.0,
        kl_scaling="per-example",
        seed=args.seed,
    )
    build = (px.shape[1:], NUM_CLASSES, counts, len(px), steps_per_epoch)
    model, weights, _ = bs.recipes.build_segmentation_model(config, *build)
    if args.dice:
        likelihood = bs.losses.DiceLoss(
            include_background=False,
            ce_loss=bs.losses.WeightedCategoricalCrossentropy(class_weights=weights),
            ce_weight=1.0 / args.dice,
        )
        loss = likelihood
        if args.bayesian_blocks != "none":
            elements = int(np.prod(px.shape[1:3]))
            loss = bs.ELBO(likelihood, bs.kl.PerExample(len(px)), elements_per_example=elements)
        model.compile(optimizer=model.optimizer, loss=loss)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        if epoch and args.patch:
            px, py = _patches(args, x, y, rng)
        model.fit(px, py, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
    seconds = time.perf_counter() - start
    if args.patch:  # the same weights at the whole image's size
        whole = bs.recipes.build_segmentation_model(config, (SIZE, SIZE, 1), *build[1:])[0]
        whole.set_weights(model.get_weights())
        model = whole
    pred = bs.uncertainty.predict_mc(model, xt, num_samples=args.samples, verbose=0)
    corrected = pred.mean / (1.0 if weights is None else np.asarray(weights))
    corrected /= corrected.sum(-1, keepdims=True)
    result = {
        "options": {k: v for k, v in vars(args).items() if k != "jsonl"},
        "raw": _scores(yt, pred.mean),
        "corrected": _scores(yt, corrected),
        "train_seconds": seconds,
    }
    line = json.dumps(result)
    print(line)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
