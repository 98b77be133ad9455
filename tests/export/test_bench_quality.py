"""`bench quality` on a small SMD-layout folder the test writes; bad folders get clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_aae.core.errors import DataError
from edge_aae.train import synth
from edge_aae.train.config import TrainConfig
from export.bench.quality import METHODS, normal_windows, pca_scores, run_quality_bench, smd_units


def write_smd(root, seed=0):
    res = synth.generate(seed=seed, train_rows=9000, test_rows=4800, faults_per_kind=1)
    for d in ("train", "test", "test_label", "interpretation_label"):
        (root / d).mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "train" / "m-1.txt", res.train, delimiter=",", fmt="%.5f")
    np.savetxt(root / "test" / "m-1.txt", res.test, delimiter=",", fmt="%.5f")
    np.savetxt(root / "test_label" / "m-1.txt", res.labels, fmt="%d")
    lines = [f"{f.start}-{f.end}:{','.join(str(synth.CHANNELS.index(c) + 1) for c in f.channels)}"
             for f in res.faults]  # SMD's own convention: [start, end)
    (root / "interpretation_label" / "m-1.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.slow  # 25 s: the folder-layout test covers the same bench in `make test`; `make bench` runs this
def test_quality_bench_smd_layout_runs_all_methods(tmp_path):
    write_smd(tmp_path / "smd")
    cfg = TrainConfig(epochs=6, patience=3, windows_per_epoch=4000)
    results, table = run_quality_bench("smd", tmp_path / "smd", tmp_path / "out", cfg)
    assert set(results["pooled"]) == set(METHODS)
    aae = results["pooled"]["AAE (torch)"]
    assert aae["mean_auroc"] > 0.8
    assert aae["mean_hitrate@150"] > 0.5
    assert abs(results["pooled"]["AAE INT8 (onnxruntime)"]["mean_auprc"] - aae["mean_auprc"]) < 0.05
    assert "oracle" in table
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["units"] == 1
    assert saved["int8_gate_passed_units"] in (0, 1)
    assert "parity gate" in table


def test_quality_bench_folder_layout(tmp_path):
    from export.bench.quality import folder_units

    root = tmp_path / "sets"
    res = synth.generate(seed=3, train_rows=6000, test_rows=3600, faults_per_kind=1)
    synth.write_dataset(root / "pump-a", res, seed=3)
    lines = [f"{f.start}-{f.end}:{','.join(str(synth.CHANNELS.index(c) + 1) for c in f.channels)}"
             for f in res.faults]
    (root / "pump-a" / "interpretation.txt").write_text("\n".join(lines) + "\n")
    units = folder_units(root)
    assert [u.name for u in units] == ["pump-a"]
    assert units[0].truth is not None
    assert units[0].test.timestamps[0] > units[0].train.timestamps[-1]
    (root / "short").mkdir()  # readable, but too short to train on: left out, the others still run
    (root / "short" / "train.csv").write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    (root / "short" / "test.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},0\n" for i in range(20)))
    cfg = TrainConfig(epochs=4, patience=2, windows_per_epoch=3000)
    results, table = run_quality_bench("folder", root, tmp_path / "out", cfg)
    assert results["pooled"]["AAE (torch)"]["mean_auroc"] > 0.8
    assert "folder layout, 1 units" in table
    assert list(results["skipped_units"]) == ["short"]
    assert "too few rows" in results["skipped_units"]["short"]
    assert "**Left out** (1 of 2 units, not in the means): short:" in table
    aae = results["pooled"]["AAE (torch)"]
    assert 0 <= aae["far_normal_windows_pct"] <= 100
    assert "on normal windows" in table
    saved = np.load(tmp_path / "out" / "scores" / "pump-a.npz")  # scores kept for plots and threshold studies
    k = list(saved["methods"]).index("AAE (torch)")
    pred = saved[f"score_{k}"] > saved[f"threshold_{k}"]
    assert len(pred) == len(saved["labels"]) == len(units[0].test.labels)
    assert results["per_file"]["AAE (torch)"]["pump-a"]["recall"] == pytest.approx(
        pred[saved["labels"] == 1].mean(), abs=1e-9)
    (root / "empty").mkdir()
    (root / "empty" / "train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="test.csv: missing for unit empty"):
        folder_units(root)


def test_missing_parts_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="missing folder test/"):
        smd_units(tmp_path)


def test_pca_scores_flag_an_off_manifold_point():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 1))
    train = np.hstack([base, base * 2 + rng.normal(0, 0.05, (500, 1))])
    _, s = pca_scores(train, np.array([[1.0, 2.0], [1.0, -2.0]]))
    assert s[1] > 10 * s[0]


def test_normal_windows_leave_out_points_whose_window_holds_an_anomaly():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0, 1, 0])
    assert normal_windows(y, 3).tolist() == [True, True, False, False, False, False, True, True, False, False]
    assert normal_windows(y, 1).tolist() == (y == 0).tolist()


def test_pca_baseline_copes_with_missing_readings():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 3))
    train[10:20, 1] = np.nan
    test = rng.normal(size=(50, 3))
    test[5, 2] = np.nan
    fit_scores, test_scores = pca_scores(train, test)
    assert np.isfinite(fit_scores).all()
    assert np.isfinite(test_scores).all()
    assert fit_scores.shape == (290,)
    assert test_scores.shape == (50,)


def test_an_unreadable_entity_is_named_and_can_be_left_out(tmp_path):
    write_smd(tmp_path / "smd")
    root = tmp_path / "smd"
    np.savetxt(root / "train" / "m-2.txt", np.ones((50, 3)), delimiter=",")
    np.savetxt(root / "test" / "m-2.txt", np.ones((40, 3)), delimiter=",")
    (root / "test_label" / "m-2.txt").write_text("0\nyes\n" * 20)
    with pytest.raises(DataError, match=r"m-2\.txt: expected one 0 or 1 per line"):
        smd_units(root)
    skipped: dict[str, str] = {}
    units = smd_units(root, skipped=skipped)
    assert [u.name for u in units] == ["m-1"]
    assert list(skipped) == ["m-2"]


def test_folder_unit_takes_labels_from_a_known_label_column(tmp_path):
    from export.bench.quality import folder_units

    unit = tmp_path / "sets" / "rig"
    unit.mkdir(parents=True)
    (unit / "train.csv").write_text("a;b\n" + "".join(f"{i % 7};{i % 3}\n" for i in range(200)))
    (unit / "test.csv").write_text("a;b;Anomaly\n" + "".join(f"{i % 7};{i % 3};{int(i > 150)}\n" for i in range(200)))
    [u] = folder_units(tmp_path / "sets")
    assert u.test.channels == ["a", "b"]  # the label column is not a channel
    assert u.test.labels is not None
    assert u.test.labels.sum() == 49
    (unit / "test.csv").write_text("a;b;state\n" + "".join(f"{i % 7};{i % 3};0\n" for i in range(200)))
    with pytest.raises(DataError, match=r"test.csv: needs a 'label' column of 0/1 \(or one named 'anomaly'"):
        folder_units(tmp_path / "sets")


def _pooled(aae_auprc, plain_auprc, hit=None):
    def one(auprc):
        out = {"pooled_f1": 0.5, "far_pct": 1.0, "mean_auprc": auprc}
        if hit is not None:
            out["mean_hitrate@150"] = hit
        return out

    return {"AAE (torch)": one(aae_auprc), "plain AE (torch)": one(plain_auprc)}


def test_seed_spread_gives_each_seed_and_the_mean_and_sample_sd():
    from export.bench.quality import seed_spread_table

    table = seed_spread_table({0: _pooled(0.40, 0.30), 1: _pooled(0.44, 0.30), 2: _pooled(0.42, 0.33)})
    lines = table.splitlines()
    assert lines[0].startswith("| method | seed | pooled F1 | FAR % | mean AUPRC |")
    assert "HitRate" not in lines[0]  # no method has it: left out
    assert "| AAE (torch) | 1 | 0.500 | 1.0 | 0.440 |" in table
    assert "| AAE (torch) | mean ± sd | **0.500 ± 0.000** | **1.0 ± 0.0** | **0.420 ± 0.020** |" in table
    assert "| plain AE (torch) | mean ± sd | **0.500 ± 0.000** | **1.0 ± 0.0** | **0.310 ± 0.017** |" in table
    assert "PCA" not in table  # a method no run has
    with_hit = seed_spread_table({0: _pooled(0.4, 0.3, hit=0.8), 1: _pooled(0.4, 0.3)})
    assert "HitRate@150%" in with_hit.splitlines()[0]
    assert "| AAE (torch) | 1 | 0.500 | 1.0 | 0.400 | - |" in with_hit  # a run without it: "-"
    with pytest.raises(ValueError, match="at least one seed"):
        seed_spread_table({})


@pytest.mark.parametrize(("seeds", "message"), [("0,0", "repeated"), ("1,x", "integers >= 0"), ("", "integers"),
                                                 ("-1", "integers >= 0")])
def test_bad_seeds_are_a_clear_usage_error(tmp_path, seeds, message):
    from tests.cli.test_cli import assert_clean_error, run_cli

    p = run_cli("bench", "quality", "--dataset", "folder", "--path", tmp_path, "--seeds", seeds)
    assert_clean_error(p, 2, message)


def test_seeds_run_the_bench_once_per_seed_and_add_the_spread(tmp_path):
    from tests.cli.test_cli import run_cli

    root = tmp_path / "sets"
    synth.write_dataset(root / "pump-a", synth.generate(seed=5, train_rows=3000, test_rows=2400, faults_per_kind=1),
                        seed=5)
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n")
    p = run_cli("bench", "quality", "--dataset", "folder", "--path", root, "--out", tmp_path / "out", "--epochs", "2",
                "--set", "windows_per_epoch=1000", "--seeds", "3,4", "--update", md)
    assert p.returncode == 0, p.stderr
    for seed in (3, 4):
        saved = json.loads((tmp_path / "out" / "folder-sets-custom" / f"seed-{seed}" / "results.json").read_text())
        assert saved["config"]["seed"] == seed
    text = md.read_text()
    assert "<!-- bench:quality-folder-sets-custom -->" in text  # named after the folder: sets keep their tables
    assert "--seeds 3,4" in text
    assert "The table above is seed 3's" in text
    assert "| AAE (torch) | 4 |" in text
    assert "| plain AE (torch) | mean ± sd |" in text


def test_the_generated_server_set_loads_as_a_folder_with_its_faults_labelled(tmp_path):
    from export.bench.quality import folder_units
    from export.bench.servers import FAULTS, main

    assert main([str(tmp_path / "srv"), "--units", "2", "--seed", "5"]) == 0
    units = folder_units(tmp_path / "srv")
    assert [u.name for u in units] == ["srv0", "srv1"]
    for u in units:
        assert len(u.train.channels) == 38
        assert u.train.channels == u.test.channels
        assert u.train.labels is None or not u.train.labels.any()
        assert int(u.test.labels.sum()) == sum(length for _, length, _ in FAULTS)
        j = u.train.channels.index("bytes_total_0")
        assert np.all(np.diff(u.train.values[:, j]) >= 0)  # a counter: it only rises
