"""The images ``bayesseg train`` holds out of training: the seeded split of
``--calibration-split`` / ``--val-fraction``, or the ``--val-images`` folder,
checked before training. TensorFlow is imported inside the functions only.
"""

from __future__ import annotations


def _held_out_counts(scan, held: list[int], num_classes: int):
    """The held-out masks' count per class, and how many of them hold foreground (> 0)."""
    import numpy as np

    import bayesseg as bs

    counts = np.zeros(num_classes, np.int64)
    with_foreground = 0
    for i in held:
        labels = bs.data.read_mask(scan.mask_paths[i])
        found = np.bincount(labels.ravel(), minlength=num_classes)
        counts += found[:num_classes]
        with_foreground += int(found[1:].sum() > 0)
    return counts, with_foreground


def _check_recall_items(options: dict, option, n_held: int, n: int, with_foreground: int):
    """``--recall-target R`` needs ``bs.recipes.min_recall_items(R)`` held-out images
    with foreground (conformal risk control's ``n >= 1 / alpha - 1``): else an error,
    before training."""
    import bayesseg as bs

    target = options.get("recall_target")
    if target is None:
        return
    name, fraction = option
    needed = bs.recipes.min_recall_items(target)
    if with_foreground < needed:
        alpha = round(1.0 - target, 12)
        raise ValueError(
            f"Argument --recall-target {target:g} needs at least {needed} held-out images "
            f"with foreground (conformal risk control at alpha = 1 - R = {alpha:g} needs n >= "
            f"1 / alpha - 1); {name} {fraction:g} holds out {n_held} of "
            f"{n} image(s), {with_foreground} with foreground. Use a larger {name}, more "
            "images or a lower --recall-target."
        )


def _held_out_option(options: dict) -> tuple[str, float] | None:
    """The option holding images out of training (name, fraction), or None.

    ``--calibration-split`` (held out for the calibration only) and
    ``--val-fraction`` (validated every epoch, then used for the calibration)
    draw the same seeded permutation; combining either with the other or with
    ``--val-images`` is an error.
    """
    given = [
        name
        for name, on in (
            ("--calibration-split", options["calibration_split"]),
            ("--val-fraction", options["val_fraction"]),
            ("--val-images", options["val_images"] is not None),
        )
        if on
    ]
    if len(given) > 1:
        raise ValueError(
            f"Arguments {' and '.join(given)} both hold images out of training; give one. "
            "With a validation set (--val-fraction or --val-images) the calibration is "
            "fitted on it, so --calibration-split is not needed."
        )
    if (options["val_images"] is None) != (options["val_masks"] is None):
        raise ValueError(
            "Arguments --val-images and --val-masks go together. Received: "
            f"val_images={options['val_images']!r}, val_masks={options['val_masks']!r}"
        )
    if options["calibration_split"]:
        return "--calibration-split", options["calibration_split"]
    if options["val_fraction"]:
        return "--val-fraction", options["val_fraction"]
    return None


def _check_held_out_classes(counts, num_classes: int, what: str) -> None:
    import numpy as np

    missing = np.flatnonzero(np.asarray(counts) == 0).tolist()
    if num_classes == 2 and missing:
        raise ValueError(
            f"{what} hold no pixel of class {missing[0]}, so Platt scaling cannot be "
            "fitted; use a larger fraction or another --seed."
        )


def _validation_folder(options: dict, scan, num_classes: int):
    """The scan of --val-images/--val-masks, checked against the training images."""
    import bayesseg as bs

    val_scan = bs.data.scan_folder(
        options["val_images"], options["val_masks"], num_classes, nan_policy=options["nan_policy"]
    )
    for attribute in ("spatial_rank", "channels"):
        if getattr(val_scan, attribute) != getattr(scan, attribute):
            raise ValueError(
                f"The images in --val-images {options['val_images']!r} have "
                f"{attribute.replace('_', ' ')} {getattr(val_scan, attribute)}, the training "
                f"images {getattr(scan, attribute)}."
            )
    import numpy as np

    counts = np.zeros(num_classes, np.int64)
    found = np.asarray(val_scan.class_counts, np.int64)
    counts[: len(found)] += found
    _check_held_out_classes(
        counts, num_classes, f"The validation masks in {options['val_masks']!r}"
    )
    if options["patch_size"] is None:
        for name, shape in zip(val_scan.names, val_scan.shapes, strict=True):
            if shape != scan.shapes[0]:
                raise ValueError(
                    f"Validation image {name!r} has shape {shape}, unlike {scan.shapes[0]} of "
                    "the training images: pass --patch-size to train on mixed sizes."
                )
    return val_scan.subset(range(len(val_scan.names)), counts)


def _calibration_split(options: dict, scan, num_classes: int):
    """Seeded, disjoint split of the images into training and held-out sets.

    Returns ``(train_scan, held_out_scan, train_counts)``; ``held_out_scan``
    is None without a split. The images are held out by ``--calibration-split``
    or ``--val-fraction`` (the same seeded permutation), or come from
    ``--val-images``. The class counts (hence the class weights and the
    output bias) come from the training images only. Fails before training
    when the held-out images cannot support a fit.
    """
    import numpy as np

    counts = np.zeros(num_classes, np.int64)
    found = np.asarray(scan.class_counts, np.int64)
    counts[: len(found)] += found
    option = _held_out_option(options)
    if options["val_images"] is not None:
        return scan, _validation_folder(options, scan, num_classes), counts
    if option is None:
        return scan, None, counts
    name, fraction = option
    n = len(scan.names)
    n_held = max(1, round(fraction * n))
    if n_held >= n:
        raise ValueError(
            f"Argument {name} {fraction} holds out {n_held} of {n} image(s), "
            "leaving none to train on; use a smaller fraction or more images."
        )
    order = np.random.default_rng(options["seed"]).permutation(n)
    held, kept = sorted(order[:n_held].tolist()), sorted(order[n_held:].tolist())
    held_counts, with_foreground = _held_out_counts(scan, held, num_classes)
    _check_recall_items(options, option, n_held, n, with_foreground)
    _check_held_out_classes(
        held_counts, num_classes, f"The {n_held} image(s) held out by {name} {fraction}"
    )
    train_counts = counts - held_counts
    return scan.subset(kept, train_counts), scan.subset(held, held_counts), train_counts
