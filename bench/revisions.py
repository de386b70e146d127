"""Two revisions of the package side by side in one run: the same benchmark script, alternated.

    python bench/revisions.py --before /path/to/old/checkout -- bench/solvers.py --solvers exact cg
    python bench/revisions.py --before ../old --after . --rounds 2 -- bench/interaction.py

Each round runs the script once with ``PYTHONPATH`` at the ``before`` checkout and once at the
``after`` checkout (the order alternates between rounds, so that a change of load hits both), the
script itself always from the ``after`` tree. Lines whose words agree are merged, each number that
differs shown as ``before | after``. Over rounds the smallest of each number is kept: the best time,
the worst accuracy, so more rounds make the columns steadier and never flatter. Lines that differ in
their words are shown both.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?x?")


def run_once(checkout: Path, script: list[str], cwd: Path) -> list[str]:
    environment = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    done = subprocess.run(
        [sys.executable, *script], cwd=cwd, env=environment, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(script)} failed at {checkout}:\n{done.stderr[-3000:]}")
    return done.stdout.splitlines()


def skeleton(line: str) -> str:
    return NUMBER.sub("#", line)


def merge_rounds(runs: list[list[str]]) -> list[str]:
    """Per line, the smallest of each number over rounds (lines that changed shape keep the first round's)."""
    merged = list(runs[0])
    for run in runs[1:]:
        for i, line in enumerate(run[: len(merged)]):
            if skeleton(line) != skeleton(merged[i]):
                continue
            numbers = iter(NUMBER.findall(line))
            merged[i] = NUMBER.sub(lambda m, numbers=numbers: _smaller(m.group(0), next(numbers)), merged[i])
    return merged


def _smaller(a: str, b: str) -> str:
    return a if float(a.rstrip("x")) <= float(b.rstrip("x")) else b


def side_by_side(before: list[str], after: list[str]) -> list[str]:
    lines = []
    for old, new in zip(before, after, strict=False):
        if skeleton(old) != skeleton(new):
            lines += [f"- {old}", f"+ {new}"]
            continue
        pairs = iter(zip(NUMBER.findall(old), NUMBER.findall(new), strict=True))

        def both(_match: re.Match[str], pairs=pairs) -> str:
            a, b = next(pairs)
            return a if a == b else f"{a} | {b}"

        lines.append(f"  {NUMBER.sub(both, old)}")
    longer = before if len(before) > len(after) else after
    sign = "-" if longer is before else "+"
    lines += [f"{sign} {line}" for line in longer[min(len(before), len(after)) :]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old revision")
    parser.add_argument("--after", type=Path, default=Path("."), help="checkout of the new revision (default: here)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- then the script and its arguments")
    args = parser.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("name the benchmark script after --")
    runs: dict[str, list[list[str]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        for which in order:
            runs[which].append(run_once(getattr(args, which), script, args.after))
    print(f"# {' '.join(script)}: before {args.before} | after {args.after}, best of {args.rounds} round(s)")
    print("\n".join(side_by_side(merge_rounds(runs["before"]), merge_rounds(runs["after"]))))


if __name__ == "__main__":
    main()
