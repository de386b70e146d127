"""The report of ``bench/factored.py``: one table per task (time, memory, agreement with the reference,
leave-one-out R on the CNN) and the notes on each peer's alignment and settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from peers import PEERS


def cell(row: dict[str, Any], key: str, digits: int = 4) -> str:
    return f"{row[key]:.{digits}f}" if key in row else "-"


def table(spec: dict[str, Any], rows: list[dict[str, Any]], n_test: int) -> list[str]:
    loo = spec.get("loo")
    head = f"| method | settings | factors + {n_test} test points | peak RSS MiB | Pearson | Spearman | rel. error |"
    head += " fitted factor |"
    lines = [
        f"## {spec['title']}", "",
        f"n_train = {spec['n_train']}, p = {spec['n_params']:,}, weight decay {spec['weight_decay']:g}, damping "
        f"{spec['damping']:.3g}: H = (1/n) sum hess L_i (or its Fisher) + {spec['shift']:.3g} I. Reference: "
        f"{spec['reference']}; Pearson and Spearman over the training points, mean over the {n_test} test points.",
        "",
    ]  # fmt: skip
    if loo:
        lines += [
            f"Leave-one-out: test point {loo['test_row']} (the highest test loss), the {len(loo['removed'])} training "
            f"points of largest |exact influence|, each removed and retrained once ({loo['retrain']}, "
            f"{loo['seconds']:.0f} s in all); "
            f"the exact solve's LOO R {loo['loo_r']:.3f} (Spearman {loo['loo_spearman']:.3f}).",
            "",
        ]
        head += " LOO R | LOO Spearman |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        label = f"**{row['method']}**" if row["family"] == "ours" else row["method"]
        if "error" in row:
            lines.append(f"| {label} | {row['describe']} | {row['error'][:240]} |" + " |" * (head.count("|") - 4))
            continue
        figures = [
            f"{row['seconds_m']:.1f} s", f"{row['rss_peak_mib']:.0f}", cell(row, "pearson"), cell(row, "spearman"),
            f"{row['rel_error']:.2g}" if "rel_error" in row else "-", f"{row.get('fitted_factor', np.nan):.3g}",
        ]  # fmt: skip
        if loo:
            figures += [cell(row, "loo_r", 3), cell(row, "loo_spearman", 3)]
        lines.append(f"| {label} | {row['describe']} | " + " | ".join(figures) + " |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    meta_ = report["meta"]
    lines = [
        "# Factored solvers: influence_widgets vs Kronfluence and pyDVL",
        "",
        f"{meta_['date']}, {meta_['machine']}, {meta_['threads']} thread(s) per method, each method in its own "
        f"process, one fresh run each (untimed before it: the package's import and per-example gradients of 16 "
        f"points). Versions: {meta_['versions']}.",
        "",
    ]
    for spec in report["tasks"]:
        lines += table(spec, [r for r in report["rows"] if r["task"] == spec["task"]], meta_["n_test"])
    families = sorted({r["family"] for r in report["rows"]})
    lines += ["## Notes", ""]
    lines += [f"- Alignment, {PEERS[f].name}: {PEERS[f].alignment}." for f in families]
    lines += [
        "- Every method gets the same shift wd + damping: ours `weight_decay` and `damping`, Kronfluence "
        "`damping_factor`, pyDVL `hessian_regularization` (EK-FAC) or `regularization` (Arnoldi). 'fitted factor' "
        "is the least-squares scale from raw scores to the reference: near the documented factor when the "
        "alignment holds (an approximate curvature moves it somewhat).",
        "- Curvature: ours K-FAC/EK-FAC take the true Fisher's exact expectation over labels; Kronfluence samples "
        "one label per point from the softmax (its default, seeded); pyDVL's EK-FAC backpropagates "
        "sum_k sqrt(p_k) log p_k once per batch (`empirical_cross_entropy_loss_fn`), whose outer products keep the "
        "cross terms between classes. pyDVL's EK-FAC supports nn.Linear only: on the CNN's Conv2d it raises "
        "(the row says so). Kronfluence's Conv2d K-FAC averages G over examples x positions (n T), not over "
        "examples (n) as KFC and ours do, so its conv blocks are KFC's / T (T = 64 and 16 output positions "
        "here): a smaller curvature and a larger scale of the scores; its EK-FAC refits the eigenvalues from the "
        "per-example gradients and is not affected.",
        "- Time is wall clock for a fresh object: factors (or Lanczos), test gradients, solve, scores against every "
        "training point. Peak RSS is the method's process's own high-water mark (`VmHWM`), Python, torch and the "
        "data included (`ru_maxrss` would carry the parent's over fork + exec). pyDVL scores "
        "256 training points per `influences` call (it holds all their gradients at once).",
    ]
    return "\n".join([*lines, ""])


def write(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "factored.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (out_dir / "factored.md").write_text(text)
    print("\n" + text)
    print(f"wrote {out_dir / 'factored.md'} and {out_dir / 'factored.json'}")
