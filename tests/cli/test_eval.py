"""`edge-aae eval`: metrics on a labelled series, plots, and clear errors for bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_aae.core.errors import DataError
from edge_aae.core.evaluate import read_interpretation


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", *args], capture_output=True, text=True, timeout=120)


def test_eval_bundle_on_synthetic_test_set(bundle, synth_dir, tmp_path):
    faults = json.loads((synth_dir / "faults.json").read_text())
    interp = tmp_path / "interp.txt"
    ch = faults["channels"]
    interp.write_text("".join(f"{f['start']}-{f['end']}:{','.join(str(ch.index(c) + 1) for c in f['channels'])}\n"
                              for f in faults["faults"]))
    res = run_cli("eval", str(bundle), "--data", str(synth_dir / "test.csv"), "--label-col", "label",
                  "--interpretation", str(interp), "--out", str(tmp_path / "ev"))
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["auroc"] >= 0.93
    assert m["auprc"] >= 0.80
    assert m["oracle_best_f1"] >= m["f1"]
    assert m["point_adjusted_f1"] >= m["f1"]
    assert m["points_without_window"] == 31
    assert m["events"]["events_detected"] >= 10
    assert m["localization"]["hitrate@150"] >= 0.8  # random ranking of 8 channels: ~0.25
    for name in ("scores.png", "contributions.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 10_000
    assert "oracle" in res.stdout
    assert "left out" in res.stdout


@pytest.mark.parametrize(("text", "match"), [
    ("10-20:1,2\nnonsense\n", r"interp.txt:2: expected"),
    ("10-20:1,9\n", r"interp.txt:1: channel\(s\) \[9\] beyond"),
    ("10-2000:1\n", r"interp.txt:1: rows 10-2000 are outside"),
])
def test_interpretation_errors_name_file_and_line(tmp_path, text, match):
    p = tmp_path / "interp.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        read_interpretation(p, 100, 8)


def test_interpretation_inclusive_ends(tmp_path):
    p = tmp_path / "interp.txt"
    p.write_text("2-4:1,3\n")
    assert [sorted(s) for s in read_interpretation(p, 6, 3)] == [[], [], [0, 2], [0, 2], [], []]
    assert [sorted(s) for s in read_interpretation(p, 6, 3, end_inclusive=True)][4] == [0, 2]


def test_eval_label_column_not_binary(bundle, synth_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = (synth_dir / "test.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",2"
    bad.write_text("\n".join(lines) + "\n")
    res = run_cli("eval", str(bundle), "--data", str(bad), "--label-col", "label")
    assert res.returncode == 1
    assert "bad.csv:6" in res.stderr
    assert "not 0 or 1" in res.stderr
