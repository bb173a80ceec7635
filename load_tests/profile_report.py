"""Summarise a py-spy raw (collapsed stacks) profile: where the server's CPU time goes.

    python -m load_tests.profile_report prof/fanout-hub0.txt [--top 25] [--filter parley]

Prints the functions with the most self time, the most inclusive time (time with them on the
stack), and the same for Parley's own code only, each as a share of all samples.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def load(path: Path) -> tuple[list[tuple[list[str], int]], int]:
    stacks: list[tuple[list[str], int]] = []
    total = 0
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a frame name with a line break in it (rare): skip the fragment
        n = int(count)
        frames = stack.split(";")
        stacks.append((frames, n))
        total += n
    return stacks, total


def short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)`` without the line number, so
    samples of one function at different lines add up."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "parley" in parts:
        parts = parts[parts.index("parley") :]
    else:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)})"


def summarise(path: Path, top: int, needle: str | None) -> str:
    stacks, total = load(path)
    if not total:
        return f"{path}: no samples"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    mine: Counter[str] = Counter()  # first frame matching the filter, from the leaf up
    for frames, n in stacks:
        names = [short(f) for f in frames]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
        if needle:
            for name in reversed(names):
                if needle in name:
                    mine[name] += n
                    break

    def block(title: str, counter: Counter[str]) -> list[str]:
        lines = [title]
        for name, n in counter.most_common(top):
            lines.append(f"  {100 * n / total:5.1f}%  {name}")
        return lines

    out = [f"{path}: {total} samples"]
    out += block("self time (leaf frames):", own)
    out += block("inclusive time:", inclusive)
    if needle:
        out += block(f"attributed to the nearest {needle!r} frame (leaf up):", mine)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy --format raw files")
    parser.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    parser.add_argument(
        "--filter", default="parley/", help="also attribute samples to this code (default parley/)"
    )
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.top, args.filter or None))
        print()


if __name__ == "__main__":
    main()
