"""What several subcommands share: data arguments, tables, benchmark sections."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from edge_aae.core.errors import UsageError


def add_data_args(p: argparse.ArgumentParser, label: bool = False, many: bool = False) -> None:
    """``--data``, ``--time-col``, ``--channels`` (and ``--label-col``); ``many``: several files."""
    if many:
        p.add_argument("--data", nargs="+", metavar="PATH",
                       help="CSV or headerless numeric text files, folders of them, or glob patterns (quoted); "
                            "each file is its own segment: no window spans two files (required)")
    else:
        p.add_argument("--data", required=True, type=Path,
                       help="CSV (header; , ; or tab) or headerless numeric text")
    add_column_args(p)
    if label:
        p.add_argument("--label-col", help="0/1 label column, to report AUROC")


def add_column_args(p: argparse.ArgumentParser) -> None:
    """``--time-col`` and ``--channels``: which columns of a data file are what."""
    p.add_argument("--time-col", help="timestamp column (default: detected by name; else one row per second)")
    p.add_argument("--channels", help="comma-separated channel columns (default: all numeric but time/label)")


def channels_arg(args: argparse.Namespace) -> list[str] | None:
    """``--channels`` as a list, or None for every channel."""
    if not args.channels:
        return None
    names = [c.strip() for c in args.channels.split(",") if c.strip()]
    if not names:
        raise UsageError("--channels: no channel names given")
    return names


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain text table on stdout."""
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def pass_fail(flag: bool) -> str:
    """``pass`` or ``FAIL``."""
    return "pass" if flag else "FAIL"
