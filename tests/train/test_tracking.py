"""``train --log-dir``: TensorBoard scalars per epoch, beside report.json."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.cli.test_cli import run_cli


def test_log_dir_gets_one_scalar_per_epoch_for_each_figure(tmp_path, synth_dir):
    p = run_cli("train", "--data", synth_dir / "train.csv", "--out", tmp_path / "run", "--epochs", "3",
                "--log-dir", tmp_path / "tb", "--quiet")
    assert p.returncode == 0, p.stderr
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/reconstruction", "loss/validation", "loss/discriminator", "loss/generator",
            "adversarial/discriminator_accuracy", "adversarial/mmd2_codes_vs_prior", "validation/score_p99",
            "time/epoch_seconds"} <= tags
    history = json.loads((tmp_path / "run" / "report.json").read_text())["history"]
    val = acc.Scalars("loss/validation")
    assert [e.step for e in val] == [1, 2, 3]
    assert [round(e.value, 5) for e in val] == [round(h["val_loss"], 5) for h in history]


def test_logging_leaves_the_trained_model_unchanged(tmp_path, synth_dir):
    args = ("train", "--data", synth_dir / "train.csv", "--epochs", "2", "--quiet")
    a = run_cli(*args, "--out", tmp_path / "a")
    b = run_cli(*args, "--out", tmp_path / "b", "--log-dir", tmp_path / "tb")
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    ra = json.loads((tmp_path / "a" / "model.json").read_text())["threshold"]
    rb = json.loads((tmp_path / "b" / "model.json").read_text())["threshold"]
    assert ra == rb
