"""The README's demo tables, generated from the demos' report.json so they cannot drift.

The reports of the runs the README quotes are committed in ``docs/reports/``
(``lesion.json``, ``anomaly.json``, ``multiclass.json``: each the
``report.json`` that ``bayesseg demo`` wrote). Each table sits in README.md
between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; this
script renders them from the reports. ``tests/test_repository.py`` checks
that the README holds exactly what it renders.

Run: python benchmarks/readme_tables.py [--write]   (default: show the differences)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "docs" / "reports"
README = ROOT / "README.md"


def _f(value) -> str:
    """Three decimals; two significant digits below 0.01, so a floor never reads 0.000."""
    if value is None:
        return "-"
    return f"{value:.2g}" if 0 < abs(value) < 0.01 else f"{value:.3f}"


def _images_run(report: dict, name: str) -> str:
    """The image demos' closing sentence: the data, the time, the report's file."""
    data = report["data"]
    return (
        f"{data['train_images']} training and {data['test_images']} held-out images, "
        f"{report['runtime_seconds']:.0f} s of demo (`docs/reports/{name}.json`)."
    )


def lesion(report: dict) -> str:
    m, base = report["metrics"], report["baseline_bce"]["metrics"]
    chance = m["chance"]
    corrected = m.get("corrected_for_class_weights", m)
    rows = [
        ("lesion recall (pixels)", m["per_class"]["1"]["recall"], base["per_class"]["1"]["recall"]),
        (
            "lesion precision (pixels)",
            m["per_class"]["1"]["precision"],
            base["per_class"]["1"]["precision"],
        ),
        ("lesion Dice (pixels)", m["per_class"]["1"]["dice"], base["per_class"]["1"]["dice"]),
        (
            "lesion recall (lesion-wise, IoU >= 0.1)",
            m["lesion_f1"]["recall"],
            base["lesion_f1"]["recall"],
        ),
        ("lesion-wise F1 (IoU >= 0.1)", m["lesion_f1"]["f1"], base["lesion_f1"]["f1"]),
    ]
    lines = ["| held-out metric | weighted ELBO | plain BCE |", "|---|---|---|"]
    lines += [f"| {name} | {_f(a)} | {_f(b)} |" for name, a, b in rows]
    lines += [
        "",
        f"Floors on the same masks: the whole image predicted scores lesion-wise F1 "
        f"{_f(chance['whole_image_lesion_f1'])} and pixel Dice "
        f"{_f(chance['voxel_f1_flag_all'])}. The weighted model's uncertainty ranks its pixel "
        f"errors with AUROC {_f(m['uncertainty_auroc'])}; {100 * m['epistemic_share']:.1f}% of "
        f"its predictive entropy over plausible-foreground pixels is epistemic. After undoing "
        f"the class weights its foreground ECE is {_f(corrected['foreground_ece'])} against a "
        f"noise floor of {_f(corrected['foreground_ece_floor'])} "
        f"({corrected['ece_region_pixels']:,} pixels). " + _images_run(report, "lesion"),
    ]
    return "\n".join(lines)


def anomaly(report: dict) -> str:
    m, z = report["metrics"], report["baseline_zscore"]
    e, ze, chance = m["events"], z["events"], m["chance"]
    rows = [
        (
            "event F1 (+-2 steps)",
            e["f1"],
            ze["f1"],
            chance["flag_all"]["f1"],
            chance["random"]["f1"],
        ),
        (
            "precision per flagged step",
            e["precision"],
            ze["precision"],
            chance["flag_all"]["precision"],
            chance["random"]["precision"],
        ),
        ("recall per event", e["recall"], ze["recall"], 1.0, chance["random"]["recall"]),
        ("step recall", e["step_recall"], ze["step_recall"], 1.0, None),
        (
            "per-step average precision",
            m["anomaly_average_precision"],
            z["anomaly_average_precision"],
            None,
            None,
        ),
    ]
    lines = [
        "| held-out figure | Bayesian tagger | rolling z-score | flag every step | "
        "random flags at the tagger's rate |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r[0]} | {' | '.join(_f(v) for v in r[1:])} |" for r in rows]
    d = report["data"]
    ratio = e["flagged_fraction"] / d["anomaly_fraction"]
    lines += [
        "",
        f"The tagger flagged {100 * e['flagged_fraction']:.3f}% of the steps "
        f"({e['flagged_steps']} of {e['steps']}), {ratio:.1f} times the anomalous share "
        f"({100 * d['anomaly_fraction']:.3f}%), to find "
        f"{e['detected_events']} of {e['true_events']} events; the z-score detector flagged "
        f"{100 * ze['flagged_fraction']:.3f}%. Threshold {report['decision']['threshold']:.4g}, "
        f"chosen on {report['decision']['validation_series']} validation series (validation "
        f"event F1 {_f(report['decision']['validation']['f1'])}). {d['test_series']} held-out "
        f"series of {d['length']} steps, {report['runtime_seconds']:.0f} s of demo, "
        f"{len(report['spikes'])} loss spikes flagged (`docs/reports/anomaly.json`).",
    ]
    return "\n".join(lines)


def multiclass(report: dict) -> str:
    m = report["metrics"]
    fg, chance = m["foreground_classes"], m["chance"]
    missed = ", ".join(map(str, fg["zero_recall"])) or "none"
    return "\n".join(
        [
            "| held-out figure | value |",
            "|---|---|",
            f"| mean recall over the {fg['present']} foreground classes present "
            f"| {_f(fg['recall'])} |",
            f"| mean Dice over them | {_f(fg['dice'])} |",
            f"| classes at recall 0 | {missed} |",
            f"| lowest recall | class {fg['lowest_recall']['class']} at "
            f"{_f(fg['lowest_recall']['recall'])} |",
            f"| foreground vs background: lesion-wise F1 (IoU >= 0.1) | {_f(m['lesion_f1']['f1'])} "
            f"(whole image predicted: {_f(chance['whole_image_lesion_f1'])}) |",
            "",
            _images_run(report, "multiclass"),
        ]
    )


RENDERERS = {"lesion": lesion, "anomaly": anomaly, "multiclass": multiclass}


def render() -> dict[str, str]:
    """NAME -> the generated block, for every committed report."""
    return {
        name: fn(json.loads((REPORTS / f"{name}.json").read_text()))
        for name, fn in RENDERERS.items()
    }


def _pattern(name: str) -> re.Pattern:
    return re.compile(
        rf"(<!-- generated:{name} -->\n)(.*?)\n?(<!-- /generated:{name} -->)", re.DOTALL
    )


def blocks(text: str) -> dict[str, str]:
    """NAME -> the block the text holds between its markers."""
    return {name: m.group(2) for name in RENDERERS if (m := _pattern(name).search(text))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's blocks")
    args = parser.parse_args()
    text, rendered = README.read_text(), render()
    stale = [name for name, block in rendered.items() if blocks(text).get(name) != block]
    if args.write:
        for name in stale:
            text = _pattern(name).sub(
                lambda m, b=rendered[name]: m.group(1) + b + "\n" + m.group(3), text
            )
        README.write_text(text)
    for name in stale:
        print(f"{'rewrote' if args.write else 'stale'}: {name}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
