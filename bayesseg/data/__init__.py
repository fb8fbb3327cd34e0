"""Data sets: the synthetic imbalanced data bayesseg embeds as its default.

See :mod:`bayesseg.data.synthetic`.
"""

from bayesseg.data.synthetic import (
    synthetic_anomaly_series,
    synthetic_lesions,
    synthetic_multiclass_masks,
)

__all__ = [
    "synthetic_anomaly_series",
    "synthetic_lesions",
    "synthetic_multiclass_masks",
]

from bayesseg.data.loaders import (  # noqa: E402
    FolderScan,
    folder_dataset,
    grid_patch_origins,
    list_images,
    load_folder,
    read_image,
    read_mask,
    scan_folder,
    write_image,
)

__all__ += [
    "FolderScan",
    "folder_dataset",
    "grid_patch_origins",
    "list_images",
    "load_folder",
    "read_image",
    "read_mask",
    "scan_folder",
    "write_image",
]
