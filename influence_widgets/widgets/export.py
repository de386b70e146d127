"""A self-contained HTML report: the explorer's data and bundled script inline, nothing fetched."""

from __future__ import annotations

import base64
import html
import json
import pathlib
from typing import Any

import numpy as np

from ..core.errors import InfluenceInputError
from .plots import describe_diagnostics, figure_png, loo_figure
from .views import STATIC

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; img-src data:">
<style>body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; }}
#iw-root > div {{ margin-bottom: 12px; }} .iw-static-notes {{ font-size: 12px; color: #555; }}</style>
</head><body><h2>{title}</h2>
<p>Pick a test point below. Scores are predicted changes in test loss when a training point is removed
(&minus;I<sub>up,loss</sub>/n): positive = the point helped this prediction.</p>
<div id="iw-root"></div>
<script type="application/json" id="iw-payload">{payload}</script>
<script>{script}</script>
</body></html>
"""


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def build_payload(explorer, test_indices: Any) -> dict:
    """The precomputed state of each chosen test point, arrays as base64 buffers."""
    if test_indices is None:
        test_indices = range(min(20, explorer.n_test))
    indices = [int(i) for i in test_indices]
    if not indices:
        raise InfluenceInputError("test_indices is empty; choose at least one test point to export")
    points = {}
    for i in indices:
        result = explorer.point(i)
        loo = explorer.loo.results.get(i)
        thumb = explorer.test_thumbs[i].tobytes() if explorer.test_thumbs is not None else b""
        points[str(i)] = {
            "changes": _b64(result.changes.astype(np.float32).tobytes()),
            "distances": _b64(result.distances.astype(np.float32).tobytes()),
            "same_label": _b64(result.same_label.tobytes()),
            "thumbnail": _b64(thumb),
            "info": result.info,
            "loo_png": base64.b64encode(figure_png(loo_figure(loo))).decode("ascii") if loo is not None else None,
            "notes": describe_diagnostics(
                explorer.explainer.diagnostics[-1] if explorer.explainer.diagnostics else None,
                explorer.explainer.weight_decay,
                explorer.explainer.damping,
            ),
        }
    strip_thumbs = explorer.test_thumbs[indices].tobytes() if explorer.test_thumbs is not None else b""
    return {
        "order": [str(i) for i in indices],
        "initial": indices.index(explorer.current) if explorer.current in indices else 0,
        "points": points,
        "train": {
            "labels": _b64(explorer.ranked.labels),
            "thumbnails": _b64(explorer.ranked.thumbnails),
            "thumb_shape": explorer.ranked.thumb_shape,
            "row_text": explorer.ranked.row_text,
        },
        "strip": {
            "labels": _b64(explorer.test_labels[indices].astype(np.int32).tobytes()),
            "predictions": _b64(explorer.predictions[indices].astype(np.int32).tobytes()),
            "thumbnails": _b64(strip_thumbs),
        },
        "class_names": explorer.class_names,
        "k": explorer.ranked.k,
        "width": explorer.scatter.width,
        "height": explorer.scatter.height,
        "x_label": explorer.scatter.x_label,
        "y_label": explorer.scatter.y_label,
    }


def write_report(explorer, path: Any, test_indices: Any, title: str) -> pathlib.Path:
    payload = json.dumps(build_payload(explorer, test_indices)).replace("</", "<\\/")
    script = (STATIC / "static.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    target = pathlib.Path(path)
    target.write_text(PAGE.format(title=html.escape(title), payload=payload, script=script), encoding="utf-8")
    return target
