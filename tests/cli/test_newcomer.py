"""A newcomer's path: one-line errors with the right exit status, and nothing secret committed by accident."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def one_line_error(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert len(lines) == 1, res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_scoring_fewer_rows_than_a_window_says_so(bundle, trained_run, tmp_path):
    few = tmp_path / "few.csv"
    rows = np.random.default_rng(0).normal(size=(10, 8))
    header = ",".join(["timestamp", *[f"c{i}" for i in range(8)]])
    import json

    channels = json.loads((bundle / "manifest.json").read_text())["channels"]
    header = ",".join(["timestamp", *channels])
    few.write_text(header + "\n" + "\n".join(f"{1700000000 + i}," + ",".join(f"{v:.3f}" for v in r)
                                             for i, r in enumerate(rows)) + "\n")
    for model in (bundle, trained_run):
        one_line_error(cli("score", str(model), "--data", str(few), "--out", str(tmp_path / "s.csv")), 1,
                       "too few rows")


def test_a_folder_for_data_and_a_bad_broker_url_are_usage_errors(bundle, tmp_path):
    one_line_error(cli("score", str(bundle), "--data", str(tmp_path), "--out", str(tmp_path / "s.csv")), 2,
                   "is a folder")
    one_line_error(cli("alerts", "--broker", "http://nowhere:1"), 2, "--broker")


def test_gitignore_covers_the_journeys_outputs_and_a_license_ships():
    paths = ["keys/private.pem", "data/train.csv", "bundles/pump/model.onnx", "runs/pump/model.json",
             ".edge-aae/x", "scores.csv", "samples.csv", "demo-out/report.md", "eval-out/metrics.json"]
    res = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(res.stdout.split()) == sorted(paths)
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def blocked(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which ``modules`` fail to import, as on the base (gateway) install."""
    import os

    d = tmp_path / "blocked"
    for m in modules:
        (d / m).mkdir(parents=True, exist_ok=True)
        (d / m / "__init__.py").write_text(f"raise ImportError('{m} is not installed (blocked by the test)')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), str(ROOT)]))


def test_base_install_says_which_extra_to_install(tmp_path, synth_dir, bundle):
    env = blocked(tmp_path, "torch", "onnx", "matplotlib")
    res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "train", "--data", str(synth_dir / "train.csv"),
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, env=env)
    one_line_error(res, 2, "torch", "pip install 'edge-aae[train]'")
    res = subprocess.run([sys.executable, "-m", "edge_aae.cli", "eval", str(bundle), "--data",
                          str(synth_dir / "test.csv"), "--label-col", "label", "--out", str(tmp_path / "ev")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ev" / "metrics.json").is_file()
    assert "plots skipped" in res.stderr


def test_every_train_option_says_what_it_does_and_its_default():
    res = cli("train", "--help")
    assert res.returncode == 0
    import dataclasses

    from edge_aae.train.config import TrainConfig

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    text = " ".join(res.stdout.split())
    for name in names:
        flag = "--" + name.replace("_", "-")
        assert flag in text
    assert text.count("(default:") >= len(names)
    assert "{conv,mlp}" in text
    assert "{auto,none}" in text
