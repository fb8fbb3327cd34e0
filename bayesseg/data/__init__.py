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
