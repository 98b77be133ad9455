"""``torchrun`` with two CPU processes (gloo): DistributedDataParallel training gives the run a
single process gives, within float noise, and only rank 0 writes it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_aae.core.data import load_series
from edge_aae.core.metrics import auroc
from edge_aae.train.detector import AAEDetector
from tests.cli.test_cli import run_cli

# Two epochs: the first epoch's losses agree to five decimals; adversarial training then amplifies
# the different order of float sums (the gradient all-reduce) like any change of seed would.
ARGS = ("--epochs", "2", "--threads", "1", "--quiet")


def torchrun(*args: object) -> subprocess.CompletedProcess[str]:
    torchrun_bin = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(torchrun_bin), "--standalone", "--nproc-per-node", "2", "-m", "edge_aae.train",
                           *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def test_torchrun_two_cpu_processes_match_one_process(tmp_path, synth_dir):
    data = synth_dir / "train.csv"
    before = set(tmp_path.iterdir())
    p = torchrun("--data", data, "--out", tmp_path / "ddp", *ARGS)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "2 processes (DistributedDataParallel)" in p.stdout
    assert p.stdout.count("wrote run directory") == 1  # rank 1 prints and writes nothing
    assert set(tmp_path.iterdir()) - before == {tmp_path / "ddp"}
    files = {f.name for f in (tmp_path / "ddp").iterdir()}
    assert {"model.json", "weights.pt", "report.json", "checkpoint.pt", "train_args.json"} <= files
    assert not any(f.endswith(".tmp") for f in files)

    single = run_cli("train", "--data", data, "--out", tmp_path / "one", *ARGS)
    assert single.returncode == 0, single.stderr
    test = load_series(synth_dir / "test.csv", label_col="label")
    ddp, one = AAEDetector.load(tmp_path / "ddp"), AAEDetector.load(tmp_path / "one")
    scores = ddp.score(test)
    assert auroc(test.labels[scores.ends], scores.score) >= 0.9
    assert abs(ddp.threshold_ - one.threshold_) <= 0.05 * one.threshold_, (ddp.threshold_, one.threshold_)
    h_ddp = json.loads((tmp_path / "ddp" / "report.json").read_text())["history"]
    h_one = json.loads((tmp_path / "one" / "report.json").read_text())["history"]
    assert np.isclose(h_ddp[0]["recon_loss"], h_one[0]["recon_loss"], rtol=1e-3)  # same batches, same samples


def test_ddp_outside_torchrun_is_a_usage_error(tmp_path, synth_dir):
    p = run_cli("train", "--data", synth_dir / "train.csv", "--out", tmp_path / "r", "--ddp")
    assert p.returncode == 2
    assert "torchrun --nproc-per-node" in p.stderr
    assert not (tmp_path / "r").exists()
