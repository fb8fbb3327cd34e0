"""A recall guarantee: conformal risk control fitted on held-out items, applied and scored.

:class:`RecallGuarantee` is what ``bayesseg train --recall-target R`` saves in
``model.json`` (``"recall_guarantee"``) and ``bayesseg predict`` applies: the
threshold of :class:`bayesseg.calibration.ConformalRiskControl` at ``alpha = 1
- R`` on the model's scores (the foreground probability of images, the
corrected event probability of series steps), and how those scores were
computed, so that predict can tell whether its own scores are the same.
:class:`RealisedRecall` scores the labels it writes against ground truth.

The fits live with their recipes:
:func:`bayesseg.recipes.segmentation.fit_recall_guarantee` (images, risk
``"fnr"``) and :meth:`bayesseg.recipes.SeriesRun.fit_recall_guarantee`
(series, risk ``"missed_events"``). Nothing here imports TensorFlow at
module level.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bayesseg._validation import argument_error, check_choice, check_float

__all__ = ["UNITS", "RealisedRecall", "RecallGuarantee", "min_recall_items", "recall_alpha"]

#: What a calibration item is: unit -> the ConformalRiskControl risk.
UNITS = {"image": "fnr", "series": "missed_events"}

# Keys of RecallGuarantee.to_dict() computed from the others (from_dict ignores them).
_DERIVED = ("alpha", "threshold", "n_calibration", "statement")


def recall_alpha(recall_target: float) -> float:
    """The risk that a recall target controls: ``1 - recall_target``, rounded to 12 decimals.

    The rounding keeps ``0.9`` at ``alpha = 0.1`` (not ``0.09999999999999998``,
    which would need one more calibration item).

    Example:

    >>> from bayesseg.recipes._guarantee import recall_alpha
    >>> recall_alpha(0.9), recall_alpha(0.95)
    (0.1, 0.05)
    """
    value = check_float(
        "recall_target", recall_target, 0.0, 1.0, strict_minimum=True, strict_maximum=True
    )
    return round(1.0 - value, 12)


def min_recall_items(recall_target: float, unit: str = "image") -> int:
    """Calibration items (images with foreground, or series with an event) a target needs.

    ``ConformalRiskControl(1 - recall_target).min_calibration_items``: the
    smallest ``n`` with ``1 / (n + 1) <= 1 - recall_target``.

    Example:

    >>> from bayesseg.recipes import min_recall_items
    >>> min_recall_items(0.9), min_recall_items(0.95, "series"), min_recall_items(0.5)
    (9, 19, 1)
    """
    from bayesseg.calibration.conformal import ConformalRiskControl

    risk = UNITS[check_choice("unit", unit, tuple(UNITS))]
    return ConformalRiskControl(recall_alpha(recall_target), risk).min_calibration_items


@dataclasses.dataclass
class RecallGuarantee:
    """A threshold whose expected recall on new items is at least ``recall_target``.

    Conformal risk control (:class:`bayesseg.calibration.ConformalRiskControl`)
    at ``alpha = 1 - recall_target`` on held-out items: per image, the
    foreground pixels' false negative rate (risk ``"fnr"``; images without
    foreground are left out, the guarantee is about new images with
    foreground); per series, the fraction of its events missed (risk
    ``"missed_events"``, an event found by a flag within ``tolerance``
    steps; series without an event are left out). Marginal: on average over
    the draw of the calibration items and the new item, for new items
    exchangeable with the calibration items, and only for scores computed
    as ``score`` says.

    Attributes:
        recall_target: float in (0, 1), ``R``.
        unit: ``"image"`` or ``"series"``.
        conformal: the fitted ``ConformalRiskControl``.
        score: how the scores were computed (JSON values): ``definition``
            and the settings a prediction must repeat (e.g. ``num_samples``,
            ``calibration``); :meth:`mismatch` compares them.
        n_items: calibration items given, those left out included.
        items: their names, or None.

    Example:

    >>> import numpy as np
    >>> from bayesseg.recipes import RecallGuarantee
    >>> rng = np.random.default_rng(0)
    >>> masks = rng.random((20, 8, 8)) < 0.2
    >>> probs = np.clip(0.4 * masks + 0.6 * rng.random((20, 8, 8)), 0, 1)
    >>> g = RecallGuarantee.fit(probs, masks, 0.8, score={"num_samples": 8})
    >>> g.conformal.alpha, g.conformal.n_calibration_, g.conformal.calibration_risk_ <= 0.2
    (0.2, 20, True)
    >>> g.statement()
    'expected per-image recall >= 0.8 over new images with foreground, exchangeable with the \
20 calibration images (conformal risk control)'
    >>> bool(np.array_equal(g.predict(probs), probs >= g.threshold))
    True
    >>> RecallGuarantee.from_dict(g.to_dict()).threshold == g.threshold
    True
    >>> g.mismatch(num_samples=16)
    'num_samples 16 (the guarantee was fitted with 8)'
    """

    recall_target: float
    unit: str
    conformal: Any
    score: dict[str, Any]
    n_items: int
    items: list[str] | None = None

    @classmethod
    def fit(
        cls,
        scores: Any,
        labels: Any,
        recall_target: float,
        *,
        unit: str = "image",
        score: dict[str, Any] | None = None,
        names: list[str] | None = None,
    ) -> RecallGuarantee:
        """Fit the threshold on calibration ``scores`` (probabilities) and 0/1 ``labels``.

        Args:
            scores: per item, probabilities in [0, 1] (an array ``(N, ...)``
                or a list of arrays of any shapes; series: 1-D).
            labels: per item, 0/1 (or bool) labels of the same shapes.
            recall_target: float in (0, 1).
            unit: ``"image"`` (default) or ``"series"``.
            score: how ``scores`` were computed (JSON values), kept as is.
            names: the items' names, or None.

        Raises:
            ValueError: fewer items that count (with foreground, or with an
                event) than ``alpha = 1 - recall_target`` needs, or the
                checks of ``ConformalRiskControl.fit``.
        """
        from bayesseg.calibration.conformal import ConformalRiskControl

        risk = UNITS[check_choice("unit", unit, tuple(UNITS))]
        conformal = ConformalRiskControl(recall_alpha(recall_target), risk)
        conformal.fit(scores, labels)
        return cls(
            recall_target=float(recall_target),
            unit=unit,
            conformal=conformal,
            score=dict(score or {}),
            n_items=len(scores),
            items=None if names is None else [str(n) for n in names],
        )

    @property
    def threshold(self) -> float:
        """Flag where the score is ``>= threshold``."""
        return float(self.conformal.threshold_)

    def statement(self) -> str:
        """The guarantee in one sentence (``predictions.json``'s ``"guarantee"``)."""
        n = self.conformal.n_calibration_
        target = f"{self.recall_target:g}"
        if self.unit == "image":
            return (
                f"expected per-image recall >= {target} over new images with foreground, "
                f"exchangeable with the {n} calibration images (conformal risk control)"
            )
        return (
            f"expected per-series event recall >= {target} (an event is found by a flag "
            f"within {self.conformal.tolerance} steps of it) over new series with an event, "
            f"exchangeable with the {n} calibration series (conformal risk control)"
        )

    def predict(self, scores: Any) -> Any:
        """The labels: ``scores >= threshold`` (bool), of the shape of ``scores``."""
        return self.conformal.predict(scores)

    def mismatch(self, **settings: Any) -> str | None:
        """Why scores computed with ``settings`` are not those of the guarantee, or None.

        Each keyword is compared with the same key of :attr:`score` (JSON
        values, so tuples and lists compare equal).
        """
        import json

        differences = [
            f"{name} {value!r} (the guarantee was fitted with {self.score.get(name)!r})"
            for name, value in settings.items()
            if json.loads(json.dumps(value)) != self.score.get(name)
        ]
        return "; ".join(differences) or None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (model.json's ``"recall_guarantee"``); :meth:`from_dict` reads them."""
        conformal = self.conformal.to_dict()
        return {
            "recall_target": self.recall_target,
            "alpha": conformal["alpha"],
            "unit": self.unit,
            "threshold": conformal["threshold"],
            "n_calibration": conformal["n_calibration"],
            "n_items": self.n_items,
            "statement": self.statement(),
            "score": self.score,
            "items": self.items,
            "conformal": conformal,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RecallGuarantee:
        """A guarantee from :meth:`to_dict`'s values (its derived keys are not read)."""
        from bayesseg.calibration.conformal import ConformalRiskControl

        if not isinstance(values, dict):
            raise argument_error("values", "be a dict written by to_dict()", type(values).__name__)
        known = {f.name for f in dataclasses.fields(cls)} | set(_DERIVED)
        unknown = sorted(set(values) - known)
        if unknown:
            raise argument_error("values", f"hold only {sorted(known)}", unknown)
        missing = [k for k in ("recall_target", "unit", "conformal") if k not in values]
        if missing:
            raise argument_error("values", "hold recall_target, unit and conformal", missing)
        conformal = ConformalRiskControl.from_dict(values["conformal"])
        unit = check_choice("unit", values["unit"], tuple(UNITS))
        if conformal.risk_name != UNITS[unit] or conformal.threshold_ is None:
            raise argument_error(
                "values", f'hold a fitted "{UNITS[unit]}" conformal entry', values["conformal"]
            )
        return cls(
            recall_target=float(values["recall_target"]),
            unit=unit,
            conformal=conformal,
            score=dict(values.get("score") or {}),
            n_items=int(values.get("n_items") or 0),
            items=values.get("items"),
        )


class RealisedRecall:
    """A guarantee's labels scored against the truth, item by item, and pooled.

    Per item: ``recall`` (``1 -`` its loss: the share of its foreground
    pixels, or of its events, that the labels find; None without
    foreground or event), ``precision`` (flagged pixels that are
    foreground; for series, flagged steps within the tolerance of an event,
    as ``bs.metrics.event_f1``'s; None when nothing is flagged) and
    ``flagged_fraction``. Pooled (:meth:`result`): ``realised_recall``, the
    mean recall over the items with foreground (or an event), ``1 -
    conformal.risk(...)``: the quantity the guarantee bounds in expectation;
    ``precision`` and ``pooled_recall`` from the summed counts.

    Example:

    >>> import numpy as np
    >>> from bayesseg.recipes import RecallGuarantee
    >>> from bayesseg.recipes._guarantee import RealisedRecall
    >>> g = RecallGuarantee.from_dict({"recall_target": 0.9, "unit": "image",
    ...     "conformal": {"alpha": 0.1, "risk": "fnr", "threshold": 0.5}})
    >>> scored = RealisedRecall(g)
    >>> scored.add("a", np.array([[0.9, 0.2], [0.7, 0.1]]), np.array([[1, 1], [0, 0]]))
    {'recall': 0.5, 'precision': 0.5, 'flagged_fraction': 0.5}
    >>> _ = scored.add("b", np.array([[0.6, 0.1]]), np.array([[0, 0]]))
    >>> r = scored.result()
    >>> r["realised_recall"], r["items_counted"], r["items_skipped"], r["precision"]
    (0.5, 1, 1, 0.3333333333333333)
    """

    def __init__(self, guarantee: RecallGuarantee):
        self.guarantee = guarantee
        self.losses: list[float] = []
        self.skipped = 0
        # image: TP, FP, FN, flagged, elements; series: the event_f1 counts.
        self.counts: dict[str, int] = {}
        self.items: dict[str, dict[str, Any]] = {}

    def _count(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(value)

    def add(self, name: str, scores: Any, labels: Any) -> dict[str, Any]:
        """Score one item: ``scores`` its probabilities, ``labels`` its truth (> 0 counts).

        Returns the item's row (also kept under ``name``).
        """
        g = self.guarantee
        scores = np.asarray(scores, dtype=np.float64)
        truth = np.asarray(labels).reshape(scores.shape) > 0
        loss = float(g.conformal.losses(scores[None], truth[None])[0])
        if np.isnan(loss):
            self.skipped += 1
        else:
            self.losses.append(loss)
        flags = g.predict(scores)
        if g.unit == "image":
            tp, flagged = int(np.sum(flags & truth)), int(flags.sum())
            self._count("tp", tp)
            self._count("fp", flagged - tp)
            self._count("fn", int(truth.sum()) - tp)
            precision = tp / flagged if flagged else None
        else:
            import bayesseg as bs

            events = bs.metrics.event_f1(
                truth, flags.astype(np.float64), threshold=0.5, tolerance=g.conformal.tolerance
            )
            for key in ("true_events", "detected_events", "flagged_steps", "correct_steps"):
                self._count(key, events[key])
            flagged = int(events["flagged_steps"])
            precision = events["correct_steps"] / flagged if flagged else None
        self._count("flagged", int(flags.sum()))
        self._count("elements", int(flags.size))
        row = {
            "recall": None if np.isnan(loss) else 1.0 - loss,
            "precision": precision,
            "flagged_fraction": float(flags.mean()) if flags.size else 0.0,
        }
        self.items[name] = row
        return row

    def result(self) -> dict[str, Any]:
        """The pooled scores (see the class), the target, the threshold and their definition."""
        g, c = self.guarantee, self.counts
        if g.unit == "image":
            found, positives = c.get("tp", 0), c.get("tp", 0) + c.get("fn", 0)
            flagged, correct = c.get("tp", 0) + c.get("fp", 0), c.get("tp", 0)
            definition = (
                "labels: foreground score >= threshold. realised_recall: 1 - the mean "
                "per-image FNR over the images with foreground (what the guarantee bounds in "
                "expectation); precision and pooled_recall: pixels, summed over the images"
            )
        else:
            found, positives = c.get("detected_events", 0), c.get("true_events", 0)
            flagged, correct = c.get("flagged_steps", 0), c.get("correct_steps", 0)
            definition = (
                "labels: corrected probability >= threshold. realised_recall: 1 - the mean "
                "per-series fraction of events missed over the series with an event (what "
                "the guarantee bounds in expectation); precision (per flagged step) and "
                "pooled_recall (per event): bs.metrics.event_f1's, summed over the series"
            )
        return {
            "recall_target": g.recall_target,
            "threshold": g.threshold,
            "realised_recall": float(1.0 - np.mean(self.losses)) if self.losses else None,
            "items_counted": len(self.losses),
            "items_skipped": self.skipped,
            "precision": correct / flagged if flagged else None,
            "pooled_recall": found / positives if positives else None,
            "flagged_fraction": c["flagged"] / c["elements"] if c.get("elements") else 0.0,
            "definition": definition,
        }
