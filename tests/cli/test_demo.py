"""The newcomer's path: `edge-aae demo` end to end, and every README command is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edge_aae.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_writes_a_report(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "demo", "--fast", "--out", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    detected = re.search(r"faults detected\s+(\d+)/(\d+)", out)
    assert detected, out
    assert detected[1] == detected[2] == "12", out  # a live alert for every injected fault
    assert out.count("RAISED") >= 12
    false_alerts = int(re.search(r"false alerts\s+(\d+)", out)[1])
    assert false_alerts <= 3
    report = tmp_path / "d" / "report"
    for name in ("report.html", "scores.png", "channels.png"):
        assert (report / name).stat().st_size > 10_000, name
    assert str((report / "report.html").resolve()) in out
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "d")], capture_output=True, text=True)
    assert not leftovers.stdout.strip(), "demo left processes behind"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.split(r"\s+#\s", line)[0].strip()
            line = re.split(r"\s+(?:>|\||&&)\s", line)[0]  # a redirection or a pipe is the shell's
            line = re.sub(r"^(\w+=\S+\s+)+", "", line)  # leading VAR=value
            if line.startswith("edge-aae "):
                cmds.append(line)
    return cmds


@pytest.mark.parametrize("command", readme_commands())
def test_readme_commands_parse(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"README command does not parse ({exc.code}): {command}")


def test_readme_has_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text
    assert "make test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_report_summary_reads_as_words():
    from edge_aae.devtools.demo import summary_rows

    rows = dict(summary_rows({"faults": 12, "faults_detected": 12, "missed": [], "false_alerts": 0,
                              "median_detection_delay_s": 41.7, "readings": 10800,
                              "throughput_readings_per_s": 1127.8225710032666}))
    assert rows == {"faults detected": "12 of 12", "faults missed": "none", "false alerts": "0",
                    "median detection delay": "42 s of data", "readings replayed": "10,800",
                    "throughput": "1,128 readings/s"}
