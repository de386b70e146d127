"""Fail if a built page loads anything from the network (scripts, styles, fonts, images, frames)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# a resource the browser fetches by itself: src=, href= on <link>, url() in CSS, @import
FETCHED = re.compile(
    r"""(?:<(?:script|img|iframe|source|embed|audio|video)\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:<link\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|(?:@import\s+["'](?:https?:)?//)""",
    re.IGNORECASE,
)


def main(root: str) -> int:
    problems = []
    for path in sorted(Path(root).rglob("*")):
        if path.suffix not in (".html", ".css", ".js") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in FETCHED.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"{path.relative_to(root)}:{line}: {text[match.start() : match.start() + 120]!r}")
    for problem in problems:
        print("loads from the network:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
