"""Writing benchmark results into BENCHMARKS.md sections (numpy-free, torch-free)."""

from __future__ import annotations

import csv
import os
import platform
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: this module stays numpy-free
    import numpy as np


def write_folder_csv(path: Path, channels: Sequence[str], stamps: Sequence[str], values: np.ndarray,
                     labels: np.ndarray | None = None) -> None:
    """A ``--dataset folder`` CSV: ``timestamp``, the channels and, given ``labels``, a ``label`` column.

    ``values``: ``(rows, channels)``, written in full precision; ``labels``: ``(rows,)`` of 0 or 1.
    """
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", *channels, *(["label"] if labels is not None else [])])
        for i, (stamp, row) in enumerate(zip(stamps, values, strict=True)):
            w.writerow([stamp, *(repr(float(v)) for v in row), *([int(labels[i])] if labels is not None else [])])


def cpuinfo_value(*keys: str) -> str | None:
    """The value of the first ``/proc/cpuinfo`` line starting with one of ``keys`` (None: no such line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(keys):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_line() -> str:
    """One line naming the CPU, core count and Python."""
    cpu = cpuinfo_value("model name") or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def update_section(path: Path, name: str, body: str, command: str) -> None:
    """Replace (or append) the section ``name`` of a Markdown file.

    The section is delimited by ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
    and starts with the command that produced it, the date and the machine.
    """
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = (f"<!-- bench:{name} -->\n"
             f"Command: `{command}` · {stamp} · {machine_line()}\n\n{body.strip()}\n"
             f"<!-- /bench:{name} -->")
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def sample_rss(pid: int, stop: threading.Event, out: list[float], every_s: float = 0.2) -> None:
    """Append a process's ``VmRSS`` (MB) to ``out`` every ``every_s`` until ``stop`` (or the process ends)."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out.append(int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(every_s)


def process_memory(pid: int) -> dict[str, float]:
    """``VmRSS``, ``RssAnon``, ``RssFile`` and ``Pss`` of a process, MB (Linux ``/proc``).

    ``Pss``: the proportional set size, pages other processes map too counted in proportion.
    """
    out = {}
    for name, keys in (("status", ("VmRSS", "RssAnon", "RssFile")), ("smaps_rollup", ("Pss",))):
        try:
            with open(f"/proc/{pid}/{name}", encoding="ascii") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in keys:
                        out[key] = int(rest.split()[0]) / 1024
        except OSError:  # smaps_rollup: Linux 4.14 and later
            pass
    return out
