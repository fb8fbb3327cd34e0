"""Former home of the folder loaders; a re-export kept for old import paths.

The code now lives in one module per concept:

* :mod:`bayesseg.data.io`: reading and writing files (``read_image``,
  ``read_mask``, ``write_image``, ``SUFFIXES``);
* :mod:`bayesseg.data.folders`: listing, pairing and checking folders
  (``list_images``, ``scan_folder``, ``FolderScan``, ``load_folder``);
* :mod:`bayesseg.data.datasets`: folders streamed into ``tf.data``
  (``folder_dataset``, ``grid_patch_origins``).

Example:
    >>> from bayesseg.data.loaders import read_image
    >>> from bayesseg.data.io import read_image as moved
    >>> read_image is moved
    True
"""

from bayesseg.data.datasets import folder_dataset, grid_patch_origins
from bayesseg.data.folders import FolderScan, list_images, load_folder, scan_folder
from bayesseg.data.io import SUFFIXES, read_image, read_mask, write_image

__all__ = [
    "FolderScan",
    "SUFFIXES",
    "folder_dataset",
    "grid_patch_origins",
    "list_images",
    "load_folder",
    "read_image",
    "read_mask",
    "scan_folder",
    "write_image",
]
