"""Data: the embedded synthetic data sets and folders of images on disk.

* :mod:`bayesseg.data.synthetic`: the synthetic imbalanced data sets;
* :mod:`bayesseg.data.io`: reading and writing npy/npz, PNG/TIFF and NIfTI files;
* :mod:`bayesseg.data.folders`: listing, pairing, checking and loading folders;
* :mod:`bayesseg.data.datasets`: folders (or their patches) streamed into ``tf.data``;
* :mod:`bayesseg.data.zscore`: the per-image z-score of every input image;
* :mod:`bayesseg.data.shifts`: distribution-shift transforms (noise, blur, gain, inversion);
* :mod:`bayesseg.data.series`: folders of .npy/.csv series and their step labels;
* :mod:`bayesseg.data.windows`: training windows cut around the events of long series.

(:mod:`bayesseg.data.loaders` re-exports the names of io, folders and datasets.)
"""

from bayesseg.data.datasets import folder_dataset, grid_patch_origins
from bayesseg.data.folders import FolderScan, list_images, load_folder, scan_folder
from bayesseg.data.io import read_image, read_mask, write_image
from bayesseg.data.series import (
    SERIES_SUFFIXES,
    list_series,
    pair_series_labels,
    read_labels,
    read_series,
)
from bayesseg.data.shifts import (
    SHIFT_KINDS,
    SHIFT_SEVERITIES,
    add_noise,
    blur,
    invert_contrast,
    scale_intensity,
    shift_images,
)
from bayesseg.data.synthetic import (
    EVENT_KINDS,
    SENSOR_ANOMALY_KINDS,
    synthetic_anomaly_series,
    synthetic_event_series,
    synthetic_lesions,
    synthetic_multiclass_masks,
    synthetic_sensor_series,
)
from bayesseg.data.windows import event_windows
from bayesseg.data.zscore import standardize_image

__all__ = [
    "EVENT_KINDS",
    "SENSOR_ANOMALY_KINDS",
    "SERIES_SUFFIXES",
    "SHIFT_KINDS",
    "SHIFT_SEVERITIES",
    "FolderScan",
    "add_noise",
    "blur",
    "event_windows",
    "folder_dataset",
    "grid_patch_origins",
    "invert_contrast",
    "list_images",
    "list_series",
    "load_folder",
    "pair_series_labels",
    "read_image",
    "read_labels",
    "read_mask",
    "read_series",
    "scale_intensity",
    "scan_folder",
    "shift_images",
    "standardize_image",
    "synthetic_anomaly_series",
    "synthetic_event_series",
    "synthetic_lesions",
    "synthetic_multiclass_masks",
    "synthetic_sensor_series",
    "write_image",
]
