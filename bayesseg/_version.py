"""The package version, read from one place: the installed package's metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("bayesseg")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
