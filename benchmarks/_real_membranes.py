"""A second real data set, for screening: electron-microscopy sections of a
fly's nerve cord with their expert membrane masks, split into tiles.

Serial-section transmission electron microscopy of the Drosophila first
instar larva ventral nerve cord (Cardona et al., PLoS Biology 8, 2010),
the training volume of the ISBI 2012 segmentation challenge
(Arganda-Carreras et al., "Crowdsourcing the creation of image
segmentation algorithms for connectomics", Frontiers in Neuroanatomy 9,
2015): 512x512 8-bit sections with binary masks, membranes about 22% of
the pixels. The benchmarks read three sections as PNG files from the
widely used Keras U-Net repository ``zhixuhao/unet`` at a pinned commit,
download them once into ``benchmarks/.data/`` (git-ignored) and check
their SHA-256.

Unlike the nuclei image (``_real_nuclei.py``), which is kept for
confirmation only, this set may be tuned on: it is where a lever is
screened on real data before the nuclei image confirms it. Split so that
no pixel is shared: section 0's top five rows of 64x64 tiles for training
(40 tiles, each with its 8 flips and quarter turns: 320 images, as many as
the nuclei set has), its sixth row for validation (8 tiles), every tile of
sections 20 and 29 held out (128 tiles). The
foreground (1) is the membrane; intensities are standardised by the
training tiles' pooled mean and standard deviation.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
from _real_nuclei import TILE, _read, _sha256, _tiles, describe, standardised_splits

CACHE = Path(__file__).resolve().parent / ".data" / "isbi2012_membranes"
COMMIT = "b45af4d458437d8281cc218a07fd4380818ece4a"
URL = f"https://raw.githubusercontent.com/zhixuhao/unet/{COMMIT}/data/membrane/train"
SECTIONS = {"train": 0, "test": (20, 29)}
FILES = {
    "image/0.png": "12c0ed6f42fc09f512abf6b354f217c950e4c8223b57a0315449b62a14556523",
    "label/0.png": "13b67edd7607a1f284c09170c96a27d38422b0ffaf88024ea5b689acb5e1b4b0",
    "image/20.png": "9153d14bfd15955fab576ea23281c4f23104b45dceed6e03e0b254607f50a1b2",
    "label/20.png": "7af7296f2e892866669d4e4f9c0d4178987e6ec6e7d0751ec238d1bbe2da9c55",
    "image/29.png": "d9ae868509c610a69acbf3d69cde4f36a8e344cbbc444f93c917bf7b9f3e784f",
    "label/29.png": "1e8839a97178914171defd6a97158f06fcac1fc3f0d45f2acdff9c49ab3fced9",
}


def _local(name: str) -> Path:
    return CACHE / name.replace("/", "_")


def fetch() -> Path:
    """The folder holding the six verified files, downloading them if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, digest in FILES.items():
        path = _local(name)
        if not path.exists():
            with urllib.request.urlopen(f"{URL}/{name}", timeout=60) as response:
                path.write_bytes(response.read())
        found = _sha256(path.read_bytes())
        if found != digest:
            path.unlink()  # so that the next run downloads it again
            raise RuntimeError(f"{URL}/{name}: SHA-256 {found}, expected {digest}")
    return CACHE


def load():
    """``(x, y), (x_val, y_val), (x_test, y_test)``: float32 images of shape
    (n, 64, 64, 1) standardised by the training tiles, and {0, 1} masks
    (membrane = 1) of the same shape.

    Example:

    >>> (x, y), (xv, yv), (xt, yt) = load()  # doctest: +SKIP
    >>> x.shape, xv.shape, xt.shape  # doctest: +SKIP
    ((320, 64, 64, 1), (8, 64, 64, 1), (128, 64, 64, 1))
    """
    fetch()

    def section(index):
        image = _read(_local(f"image/{index}.png"))
        membrane = (_read(_local(f"label/{index}.png")) < 128).astype(np.float64)
        return image, membrane

    rows = 512 // TILE
    image, mask = section(SECTIONS["train"])
    images = {"train": _tiles(image, range(0, 5)), "val": _tiles(image, range(5, 6))}
    masks = {"train": _tiles(mask, range(0, 5)), "val": _tiles(mask, range(5, 6))}
    held_out = [section(index) for index in SECTIONS["test"]]
    images["test"] = np.concatenate([_tiles(i, range(rows)) for i, _ in held_out])
    masks["test"] = np.concatenate([_tiles(m, range(rows)) for _, m in held_out])
    return standardised_splits(images, masks)


if __name__ == "__main__":
    describe(load(), "membrane")
