"""What trivial detectors score: the event and lesion scores against the old overlap rules.

Before a detection score is published or optimised, detectors that know
nothing (or know where the events are but cry wolf around them) must score
at or below chance on it. This script scores them on three cases:

- ``spikes``: the anomaly demo's labels, 200 series of 4096 steps, 20% of
  them with two one-step anomalies (``synthetic_anomaly_series``, "mixed");
- ``long events``: 40 series of 4096-16384 steps, faults of 29-1500 steps
  on 10% of the steps (``synthetic_event_series``);
- ``lesions``: the lesion demo's 40 held-out masks (``synthetic_lesions``).

Detectors: the truth itself; flagging everything; random flags at 1%; the
true events widened by +-10, +-50, +-70 steps (pixels: dilated by 3 and 10);
one flagged step in the middle of each event. Scores: the event F1 (recall
per event, precision per flagged step, +-2 steps), its step recall, and
the rule it replaced (``old F1``: a predicted run counts as correct if any
of its steps touches an event, false alarms counted per run); for lesions
the lesion-wise F1 at IoU >= 0.1 and the old any-overlap rule.

Run: python benchmarks/adversarial_scores.py
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _old_event_f1(truth, flags, tolerance=2):
    """The replaced rule: runs of flags touching an event are true positives, per run."""
    import numpy as np
    from scipy import ndimage

    runs = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], bool)
    window = np.ones((1, 2 * tolerance + 1), bool)
    t_lab, n_true = ndimage.label(truth, runs)
    p_lab, n_pred = ndimage.label(flags, runs)
    tp = len(np.unique(p_lab[flags & ndimage.binary_dilation(truth, window)]))
    found = len(np.unique(t_lab[truth & ndimage.binary_dilation(flags, window)]))
    precision, recall = tp / max(n_pred, 1), found / max(n_true, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _old_lesion_f1(truth, pred):
    """The replaced rule: any overlap is a match, in both directions."""
    import numpy as np
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, 2)
    tp = found = n_true = n_pred = 0
    for t, p in zip(truth, pred, strict=True):
        t_lab, nt = ndimage.label(t, structure)
        p_lab, npred = ndimage.label(p, structure)
        both = (t_lab > 0) & (p_lab > 0)
        tp, found = tp + len(np.unique(p_lab[both])), found + len(np.unique(t_lab[both]))
        n_true, n_pred = n_true + nt, n_pred + npred
    precision, recall = tp / max(n_pred, 1), found / max(n_true, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _middle_of_each_event(truth):
    import numpy as np
    from scipy import ndimage

    flags = np.zeros_like(truth)
    for row, t in zip(flags, truth, strict=True):
        lab, n = ndimage.label(t)
        for centre in ndimage.center_of_mass(t, lab, range(1, n + 1)):
            row[int(centre[0])] = True
    return flags


def series_rows(truth):
    """(name, event F1, step recall, old F1) per detector, for (N, T) labels."""
    import numpy as np
    from scipy import ndimage

    import bayesseg as bs

    rng = np.random.default_rng(0)
    detectors = {
        "the truth": truth,
        "flag every step": np.ones_like(truth),
        "random flags at 1%": rng.random(truth.shape) < 0.01,
        **{
            f"truth widened by +-{w}": ndimage.binary_dilation(truth, np.ones((1, 2 * w + 1), bool))
            for w in (10, 50, 70)
        },
        "one step inside each event": _middle_of_each_event(truth),
    }
    rows = []
    for name, flags in detectors.items():
        s = bs.metrics.event_f1(truth, flags.astype(float))
        rows.append((name, s["f1"], s["step_recall"], _old_event_f1(truth, flags.astype(bool))))
    chance = bs.metrics.event_chance(truth, rate=0.01)
    return rows, chance


def lesion_rows(truth):
    import numpy as np
    from scipy import ndimage

    import bayesseg as bs

    rng = np.random.default_rng(0)
    square = np.ones((1, 3, 3), bool)
    detectors = {
        "the truth": truth,
        "the whole image": np.ones_like(truth),
        "random pixels at 1%": rng.random(truth.shape) < 0.01,
        "truth dilated by 3 px": ndimage.binary_dilation(truth, square, iterations=3),
        "truth dilated by 10 px": ndimage.binary_dilation(truth, square, iterations=10),
    }
    return [
        (name, bs.metrics.lesion_f1(truth, p.astype(float))["f1"], _old_lesion_f1(truth, p))
        for name, p in detectors.items()
    ]


def main() -> None:
    import numpy as np

    import bayesseg as bs

    _, spikes = bs.data.synthetic_anomaly_series(200, length=4096, seed=10_000, kind="mixed")
    _, long_events = bs.data.synthetic_event_series(40, seed=5)
    length = min(len(t) for t in long_events)
    long_events = np.stack([t[:length] for t in long_events])  # (N, T) for the old rule
    for title, truth in (("spikes", spikes > 0.5), ("long events", long_events > 0.5)):
        rows, chance = series_rows(truth)
        print(
            f"{title}: {truth.shape[0]} series x {truth.shape[1]} steps, "
            f"{100 * truth.mean():.3f}% anomalous; chance: flag all "
            f"{chance['flag_all']['f1']:.3f}, random at 1% {chance['random']['f1']:.3f}"
        )
        print(f"  {'detector':28s} {'event F1':>8s} {'step rec.':>9s} {'old F1':>7s}")
        for name, f1, step_recall, old in rows:
            print(f"  {name:28s} {f1:8.3f} {step_recall:9.3f} {old:7.3f}")
    _, masks = bs.data.synthetic_lesions(40, shape=(64, 64), seed=10_000)
    truth = masks[..., 0] > 0.5
    print(f"lesions: {truth.shape[0]} masks of 64x64, {100 * truth.mean():.2f}% foreground")
    print(f"  {'detector':28s} {'lesion F1':>9s} {'old F1':>7s}")
    for name, f1, old in lesion_rows(truth):
        print(f"  {name:28s} {f1:9.3f} {old:7.3f}")


if __name__ == "__main__":
    main()
