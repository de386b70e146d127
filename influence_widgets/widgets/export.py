"""A self-contained HTML report: the explorer's data and bundled script inline, nothing fetched.

No data is markup: the payload is JSON inside a non-executed script element with ``<``, ``>``, ``&``,
U+2028 and U+2029 escaped, so no string can end the element or open a comment; the views put text in
as text. The Content-Security-Policy allows only the one inline script (by its hash): no request leaves
the page and no inline event handler runs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import pathlib
from typing import Any

import numpy as np

from ..core.errors import InfluenceInputError
from .panels import loo_state, solve_state
from .views import STATIC

CSP = (
    "default-src 'none'; script-src '{script_hash}'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'none'; form-action 'none'; base-uri 'none'"
)

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{ font: 14px system-ui, sans-serif; margin: 16px auto; color: #222; max-width: 1600px; padding: 0 16px; }}
#iw-root > section {{ margin-bottom: 18px; }} #iw-root h3 {{ font-size: 15px; margin: 14px 0 6px; }}</style>
</head><body><h1 style="font-size:20px">{title}</h1>
<p>Pick a test point below (click, or the arrow keys). Scores are predicted changes in test loss when a training
point is removed (&minus;I<sub>up,loss</sub>/n): positive (blue) = the point helped this prediction, negative
(vermillion) = it hurt.</p>
<div id="iw-root"></div>
<script type="application/json" id="iw-payload">{payload}</script>
<script>{script}</script>
</body></html>
"""


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def _buffers(state: dict) -> dict:
    return {k: _b64(v) if isinstance(v, bytes) else v for k, v in state.items()}


def safe_json(value: Any) -> str:
    """JSON that cannot end a script element, open an HTML comment or break a JavaScript line."""
    text = json.dumps(value, ensure_ascii=True)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def build_payload(explorer, test_indices: Any) -> dict:
    """The precomputed state of each chosen test point (positions), arrays as base64 buffers."""
    if test_indices is None:
        test_indices = range(min(20, explorer.n_test))
    indices = [int(i) for i in test_indices]
    if not indices:
        raise InfluenceInputError("test_indices is empty; choose at least one test point to export")
    for i in indices:
        if not 0 <= i < explorer.n_test:
            raise InfluenceInputError(
                f"test_indices contains {i}, out of range for {explorer.n_test} test points (positions)"
            )
    ex = explorer.explainer
    points = {}
    for i in indices:
        result = explorer.point(i)
        loo = explorer.loo.results.get(i)
        diagnostics = (
            result.diagnostics if result.diagnostics is not None else (ex.diagnostics[-1] if ex.diagnostics else None)
        )
        points[str(i)] = {
            "changes": _b64(result.changes.astype(np.float32).tobytes()),
            "distances": _b64(result.distances.astype(np.float32).tobytes()),
            "same_label": _b64(result.same_label.tobytes()),
            "thumbnail": _b64(explorer.test_thumbs[i].tobytes() if explorer.test_thumbs is not None else b""),
            "test_row": _b64(explorer.test_rows[i].tobytes() if explorer.test_rows is not None else b""),
            "info": result.info,
            "loo": _buffers(loo_state(loo, explorer.loo.verdict(i))) if loo is not None else None,
            "loo_note": (
                f"No leave-one-out check was run for test #{explorer.test_ids[i]} before this report was saved."
            ),
            "solve": _buffers(solve_state(diagnostics, ex.weight_decay, ex.damping, explorer.stationarity)),
        }
    shared = {k: (_b64(v) if isinstance(v, bytes) else v) for k, v in explorer.shared.items()}
    strip = explorer.strip
    strip_targets = explorer._target_bytes(explorer.test_labels[indices])
    predictions = np.asarray(explorer.predictions)[indices]
    return {
        "order": [str(i) for i in indices],
        "initial": indices.index(explorer.current) if explorer.current in indices else 0,
        "points": points,
        "train": {**shared, "row_scale": _b64(explorer.ranked.row_scale)},
        "strip": {
            **{k: _b64(v) for k, v in strip_targets.items()},
            "task": explorer.task,
            "ids": [strip.ids[i] for i in indices] if strip.ids else [str(i) for i in indices],
            "predictions": _b64(predictions.astype(np.int32).tobytes() if explorer.task == "classification" else b""),
            "predicted_values": _b64(
                predictions.astype(np.float32).tobytes() if explorer.task == "regression" else b""
            ),
            "thumbnails": _b64(explorer.test_thumbs[indices].tobytes() if explorer.test_thumbs is not None else b""),
            "row_text": [explorer.test_text[i] for i in indices] if explorer.test_text else [],
        },
        "k": explorer.ranked.k,
        "height": explorer.scatter.height,
        "x_label": explorer.scatter.x_label,
        "y_label": explorer.scatter.y_label,
    }


def write_report(explorer, path: Any, test_indices: Any, title: str) -> pathlib.Path:
    payload = safe_json(build_payload(explorer, test_indices))
    script = (STATIC / "static.js").read_text(encoding="utf-8")
    if "</script" in script.lower() or "<!--" in script:
        raise RuntimeError("the bundled static.js contains '</script' or '<!--'; it cannot be inlined safely")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = CSP.format(script_hash=f"sha256-{digest}")
    target = pathlib.Path(path)
    page = PAGE.format(title=html.escape(str(title)), csp=csp, payload=payload, script=script)
    target.write_text(page, encoding="utf-8")
    return target
