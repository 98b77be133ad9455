"""The CLI as a user runs it: subprocesses, exit codes, one-line errors."""

import subprocess
import sys

import pytest


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge_aae.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_clean_error(proc, code, *fragments):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0]


def test_synth_train_score_sample(tmp_path, synth_dir, trained_run):
    out = tmp_path / "s"
    p = run_cli("synth", "--out", out, "--seed", "3", "--train-rows", "2000", "--test-rows", "2400",
                "--faults-per-kind", "1")
    assert p.returncode == 0, p.stderr
    assert (out / "faults.json").is_file()
    run = tmp_path / "run"
    p = run_cli("train", "--data", out / "train.csv", "--out", run, "--epochs", "2", "--quiet")
    assert p.returncode == 0, p.stderr
    assert {"model.json", "weights.pt", "report.json", "report.png"} <= {f.name for f in run.iterdir()}
    assert "preset auto: relative_channels" in p.stdout  # each choice of the preset, with its reason
    assert "self-check, synthetic faults in held-out normal windows flagged by the threshold: spike" in p.stdout
    p = run_cli("train", "--data", out / "train.csv", "--out", tmp_path / "run2", "--epochs", "30", "--patience", "1",
                "--quiet")
    assert p.returncode == 0, p.stderr
    assert "stopped early at epoch" in p.stdout  # one line, not a progress bar frozen at 7/30
    scores = tmp_path / "scores.csv"
    p = run_cli("score", trained_run, "--data", synth_dir / "test.csv", "--out", scores, "--label-col", "label")
    assert p.returncode == 0, p.stderr
    header = scores.read_text().splitlines()[0].split(",")
    assert header[:5] == ["timestamp", "score", "threshold", "is_anomaly", "top_channel"]
    assert "contrib_flow_m3h" in header
    assert header[-2:] == ["latent_score", "unseen_state"]
    assert "AUROC" in p.stdout
    p = run_cli("sample", trained_run, "-n", "3", "--out", tmp_path / "samples.csv")
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "samples.csv").read_text().splitlines()) == 1 + 3 * 32


def test_missing_data_file_is_a_usage_error(tmp_path):
    p = run_cli("train", "--data", tmp_path / "nope.csv", "--out", tmp_path / "run")
    assert_clean_error(p, 2, "nope.csv", "file not found")


def test_non_numeric_channel(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("timestamp,a,b\n" + "\n".join(f"{i},{i},x{i}" for i in range(100)))
    p = run_cli("train", "--data", f, "--out", tmp_path / "run", "--channels", "a,b")
    assert_clean_error(p, 1, "bad.csv:2", "column 'b'")


def test_undetectable_delimiter(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("a b\n1 2\n3 4\n")
    assert_clean_error(run_cli("train", "--data", f, "--out", tmp_path / "run"), 1, "bad.csv", "delimiter")


def test_too_few_rows(tmp_path):
    f = tmp_path / "short.csv"
    f.write_text("timestamp,a\n" + "\n".join(f"{i},{i}" for i in range(10)))
    assert_clean_error(run_cli("train", "--data", f, "--out", tmp_path / "run"), 1, "short.csv", "too few rows")


def test_scoring_channels_differ_from_training(tmp_path, trained_run):
    f = tmp_path / "other.csv"
    f.write_text("timestamp,a\n" + "\n".join(f"{i},{i}" for i in range(100)))
    p = run_cli("score", trained_run, "--data", f, "--out", tmp_path / "s.csv")
    assert_clean_error(p, 1, "other.csv", "missing channel column(s)", "flow_m3h")


def test_corrupt_run_directory(tmp_path, synth_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("{not json")
    p = run_cli("score", run, "--data", synth_dir / "test.csv", "--out", tmp_path / "s.csv")
    assert_clean_error(p, 1, "model.json", "not valid JSON")


@pytest.mark.parametrize("args", [["train", "--data", "x.csv"], ["frobnicate"]])
def test_usage_errors_exit_2(args):
    assert run_cli(*args).returncode == 2


def test_bad_option_value_is_a_usage_error(tmp_path, synth_dir):
    p = run_cli("train", "--data", synth_dir / "train.csv", "--out", tmp_path / "r", "--target-far", "2")
    assert_clean_error(p, 2, "target_far")


@pytest.mark.parametrize(("setting", "code", "fragment"), [
    ("window_len=x", 2, "window_len needs an integer, got 'x'"),
    ("nope=1", 2, "unknown key 'nope'"),
    ("window_len", 2, "expected KEY=VALUE"),
    ("window_len=2", 1, "window_len must be at least 4"),
    ("threshold=t2", 1, 'needs score_stat = "shift"'),
    ("unseen_state=maybe", 2, "unseen_state needs true or false, got 'maybe'"),
])
def test_bench_quality_set_is_checked_before_any_work(tmp_path, setting, code, fragment):
    p = run_cli("bench", "quality", "--dataset", "skab", "--path", tmp_path, "--set", setting)
    assert_clean_error(p, code, "--set", fragment)


def test_bool_settings_read_false_as_false():
    from edge_aae.cli.tools import parse_settings

    assert parse_settings(["unseen_state=false"]) == {"unseen_state": False}
    assert parse_settings(["unseen_state=True"]) == {"unseen_state": True}


def test_train_takes_bool_options_as_on_off_flags():
    from edge_aae.cli import build_parser

    parser = build_parser()
    base = ["train", "--data", "d.csv", "--out", "r"]
    assert parser.parse_args([*base, "--no-unseen-state"]).unseen_state is False
    assert parser.parse_args([*base, "--unseen-state"]).unseen_state is True
    assert parser.parse_args(base).unseen_state is None  # not given: the config's default stays


def test_train_on_a_short_series_reports_how_far_the_shift_covariance_was_scaled(tmp_path, synth_dir):
    """400 rows: training windows join the shift score's reference; the factor is in report.json and the table."""
    import json

    lines = (synth_dir / "train.csv").read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:401]) + "\n")
    run = tmp_path / "run"
    p = run_cli("train", "--data", short, "--out", run, "--epochs", "2", "--score-stat", "shift", "--threshold", "t2",
                "--quiet")
    assert p.returncode == 0, p.stderr
    factor = json.loads((run / "report.json").read_text())["shift_covariance_inflation"]
    assert factor >= 1.0
    shown = "shift covariance scaled by (unseen normal windows)" in p.stdout
    assert shown == (factor != 1.0)
    if shown:
        assert f"{factor:.2f}" in p.stdout
