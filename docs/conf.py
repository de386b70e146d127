"""Sphinx configuration: the README as getting started, the notebooks executed, the API from docstrings.

Built offline by ``docs/build.sh``: every extension and the theme come from PyPI (the ``docs`` extra), and
nothing on a built page loads from the network (``docs/check_offline.py`` fails the build otherwise).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# the notebooks live in notebooks/ (run by the tests); Sphinx reads them from a copy inside its source tree
NOTEBOOKS = HERE / "notebooks"
shutil.rmtree(NOTEBOOKS, ignore_errors=True)
NOTEBOOKS.mkdir()
only = os.environ.get("INFLUENCE_WIDGETS_DOCS_NOTEBOOKS")  # e.g. "07,08" to build a few while writing
for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
    if not only or path.name[:2] in only.split(","):
        shutil.copy(path, NOTEBOOKS / path.name)
os.environ["INFLUENCE_WIDGETS_DOCS"] = "1"  # the notebooks embed their explorer's static export

project = "influence_widgets"
author = "influence_widgets contributors"
copyright = "2026, influence_widgets contributors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "README.md"]
html_theme = "furo"  # fonts and scripts ship in the wheel: no CDN
html_title = "influence_widgets"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# a broken cross-reference fails the build (with -W in build.sh)
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|np|numpy|nn|pathlib|collections|typing|ipywidgets|anywidget|traitlets)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterator|Iterable|Sequence|Literal|Path|Tensor|Figure|Client|Dataset|Module)"),
    (r"py:class", r"influence_widgets\..*\._\w+"),  # private bases
    (r"py:class", r"influence_widgets\.core\.explainer_\w+\.\w+"),  # the explainer's parts: documented as its methods
    (r"py:class", r"(.* .*|flattened)"),  # prose in a field's type slot, not a name
]
autodoc_typehints = "none"  # shapes and units are in the docstrings; hints name classes of other libraries
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# notebooks: executed on every build, an error in any cell fails it
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 900
nb_execution_show_tb = True
nb_ipywidgets_js = {}  # MyST-NB's default loads require.js and the widget manager from a CDN
nb_merge_streams = True
suppress_warnings = ["mystnb.unknown_mime_type"]  # live widget views: the page shows the static export instead
myst_heading_anchors = 3


# The docstrings are written as plain text with math (|x|, theta_-z, x*y) for readers of help(); escape
# what reStructuredText would take for markup, and start a block where the text indents without a blank line.
_ESCAPES = [
    (re.compile(r"\|"), r"\\|"),
    (re.compile(r"(?<![*\\])\*(?!\*)"), r"\\*"),
    (re.compile(r"(?<=\w)_(?=[^\w`]|$)"), r"\\_"),
]


def _plain_text_docstring(app, what, name, obj, options, lines):
    out: list[str] = []
    for line in lines:
        if not line.lstrip().startswith(".."):
            parts = line.split("``")  # leave ``literals`` alone
            for k in range(0, len(parts), 2):
                for pattern, replacement in _ESCAPES:
                    parts[k] = pattern.sub(replacement, parts[k])
            line = "``".join(parts)
        indent = len(line) - len(line.lstrip())
        if out and line.strip() and out[-1].strip():
            previous = len(out[-1]) - len(out[-1].lstrip())
            if indent != previous and not out[-1].rstrip().endswith(":"):
                out.append("")
        out.append(line)
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_docstring, priority=400)
