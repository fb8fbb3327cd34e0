"""A real data set for confirmation runs: one fluorescence image of cell nuclei
with its expert mask, split into tiles by position.

The image (512x512, 16-bit, 183 labelled nuclei covering 20% of the pixels)
comes from the 2018 Data Science Bowl (stage 1 training set, BBBC038;
Caicedo et al., "Nucleus segmentation across imaging experiments: the 2018
Data Science Bowl", Nature Methods 16, 2019), as the StarDist package ships
it for its own tests (Schmidt et al., MICCAI 2018; BSD-3-Clause). The
benchmarks fetch that package's pinned release once with ``pip download
stardist==0.9.2 --no-deps`` into ``benchmarks/.data/`` (git-ignored), check
the two files' SHA-256 and read them with Pillow (installed with matplotlib).

It was fixed before any tuning and serves only to confirm: no default was
chosen on it. Split (64x64 tiles, by position, so no pixel is shared): the
top five tile rows for training (40 tiles, each with its 8 flips and
quarter turns: 320 images), the sixth row for validation (8 tiles), the
last two rows held out (16 tiles). Intensities are standardised by the
training tiles' pooled mean and standard deviation (the ``--zscore
dataset`` of ``bayesseg train``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".data" / "dsb2018_nuclei"
RELEASE = "stardist==0.9.2"
FILES = {
    "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}
TILE = 64


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _extract(archive: Path) -> None:
    """Copy the two images out of a downloaded wheel or source archive."""
    wanted = {f"stardist/data/images/{name}": name for name in FILES}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as handle:
            members = {name: handle.read(name) for name in handle.namelist() if name in wanted}
    else:
        with tarfile.open(archive) as handle:
            members = {}
            for member in handle.getmembers():
                suffix = member.name.split("/", 1)[-1]
                if suffix in wanted:
                    members[suffix] = handle.extractfile(member).read()
    for path, name in wanted.items():
        if path not in members:
            raise RuntimeError(f"{archive.name} has no {path}")
        (CACHE / name).write_bytes(members[path])


def fetch() -> Path:
    """The folder holding the two verified images, downloading them if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    if not all((CACHE / name).exists() for name in FILES):
        download = CACHE / "download"
        download.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", RELEASE, "--no-deps", "-q", "-d", download],
            check=True,
        )
        archives = sorted(download.glob("stardist-*"))
        if not archives:
            raise RuntimeError(f"pip download {RELEASE} produced no archive in {download}")
        _extract(archives[0])
    for name, digest in FILES.items():
        found = _sha256((CACHE / name).read_bytes())
        if found != digest:
            raise RuntimeError(f"{CACHE / name}: SHA-256 {found}, expected {digest}")
    return CACHE


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64)


def _tiles(array: np.ndarray, rows: range) -> np.ndarray:
    columns = array.shape[1] // TILE
    return np.stack(
        [
            array[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            for r in rows
            for c in range(columns)
        ]
    )


def _dihedral(tiles: np.ndarray) -> np.ndarray:
    """Every tile under the 8 flips and quarter turns (tile-major order)."""
    views = []
    for tile in tiles:
        for turns in range(4):
            turned = np.rot90(tile, turns)
            views += [turned, turned[:, ::-1]]
    return np.stack(views)


def load():
    """``(x, y), (x_val, y_val), (x_test, y_test)``: float32 images of shape
    (n, 64, 64, 1) standardised by the training tiles, and {0, 1} masks
    (nucleus = 1) of the same shape.

    Example:

    >>> (x, y), (xv, yv), (xt, yt) = load()  # doctest: +SKIP
    >>> x.shape, xv.shape, xt.shape  # doctest: +SKIP
    ((320, 64, 64, 1), (8, 64, 64, 1), (16, 64, 64, 1))
    """
    folder = fetch()
    image = _read(folder / "img2d.tif")
    mask = (_read(folder / "mask2d.tif") > 0).astype(np.float64)
    splits = {"train": range(0, 5), "val": range(5, 6), "test": range(6, 8)}
    images = {name: _tiles(image, rows) for name, rows in splits.items()}
    masks = {name: _tiles(mask, rows) for name, rows in splits.items()}
    return standardised_splits(images, masks)


def standardised_splits(images: dict, masks: dict):
    """``(x, y), (x_val, y_val), (x_test, y_test)`` from tiles per split: the
    training tiles under their 8 flips and quarter turns, every image
    standardised by the training tiles' pooled mean and standard deviation,
    float32 with a channel axis."""
    images, masks = dict(images), dict(masks)
    images["train"], masks["train"] = _dihedral(images["train"]), _dihedral(masks["train"])
    mean, std = images["train"].mean(), images["train"].std()

    def pair(name):
        x = ((images[name] - mean) / std).astype(np.float32)[..., None]
        return x, masks[name].astype(np.float32)[..., None]

    return pair("train"), pair("val"), pair("test")


def describe(splits, foreground: str) -> None:
    """Print each split's shape, foreground fraction and mean intensity."""
    for name, (xs, ys) in zip(("train", "val", "test"), splits, strict=True):
        print(name, xs.shape, f"{foreground} fraction {ys.mean():.3f}", f"mean {xs.mean():+.3f}")


if __name__ == "__main__":
    describe(load(), "nucleus")
