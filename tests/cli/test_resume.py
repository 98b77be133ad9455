"""``train --resume``: an interrupted run continues from its last epoch to the same weights."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.cli.test_cli import assert_clean_error, run_cli

SMALL = ("--window-len", "16", "--hidden", "16", "--windows-per-epoch", "4000", "--patience", "50", "--quiet")
EPOCHS = "10"  # long enough that the SIGINT lands mid-run even when the poll is slow


def ctrl_c_enabled() -> None:
    """In the child: Ctrl-C as a terminal gives it, even when this run inherited SIGINT ignored (nohup, &)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def test_sigint_then_resume_reaches_the_uninterrupted_weights(tmp_path, synth_dir):
    data = synth_dir / "train.csv"
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    p = run_cli("train", "--data", data, "--out", whole, "--epochs", EPOCHS, *SMALL)
    assert p.returncode == 0, p.stderr
    proc = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "train", "--data", str(data), "--out", str(cut),
                             "--epochs", EPOCHS, *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_enabled)
    deadline = time.monotonic() + 240
    while checkpoint_epoch(cut / "checkpoint.pt") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"edge-aae train --resume {cut}" in err
    assert "Traceback" not in err
    stopped_at = checkpoint_epoch(cut / "checkpoint.pt")
    assert 3 <= stopped_at < int(EPOCHS)
    assert not (cut / "weights.pt").exists()  # nothing half-written passes for a model
    p = run_cli("train", "--resume", cut, "--quiet")
    assert p.returncode == 0, p.stderr
    a = torch.load(whole / "weights.pt", weights_only=True)
    b = torch.load(cut / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = [json.loads((run / "report.json").read_text())["history"] for run in (whole, cut)]
    assert [h["val_loss"] for h in history[0]] == [h["val_loss"] for h in history[1]]
    assert json.loads((whole / "model.json").read_text())["threshold"] == \
        json.loads((cut / "model.json").read_text())["threshold"]


def test_resume_refuses_new_settings_and_missing_runs(tmp_path, synth_dir):
    p = run_cli("train", "--resume", tmp_path / "nothing")
    assert_clean_error(p, 2, "train_args.json: missing")
    p = run_cli("train", "--resume", tmp_path, "--data", synth_dir / "train.csv", "--lr", "0.1")
    assert_clean_error(p, 2, "leave out --data, --lr")
    p = run_cli("train", "--epochs", "2")
    assert_clean_error(p, 2, "train needs --data and --out")
