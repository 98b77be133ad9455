"""Shared fixtures: a synthetic data set and one small model trained for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_aae.train import synth

# Small but real: enough for the quality floors, fast on a 2-core CPU.
FAST_TRAIN = {"epochs": 12, "patience": 4, "windows_per_epoch": 6000}


@pytest.fixture
def broker(tmp_path: Path):
    """A real mosquitto on a free loopback port, stopped after the test."""
    from edge_aae.devtools.mosquitto import Mosquitto

    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.write_dataset(out, synth.generate(seed=0, train_rows=9000, test_rows=7200), seed=0)
    return out


@pytest.fixture(scope="session")
def trained_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_aae.core.data import load_series
    from edge_aae.train.config import TrainConfig
    from edge_aae.train.detector import AAEDetector

    run = tmp_path_factory.mktemp("run")
    det = AAEDetector(TrainConfig(**FAST_TRAIN)).fit(load_series(synth_dir / "train.csv"))
    det.save(run)
    return run


@pytest.fixture(scope="session")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.bundle import build_bundle

    out = tmp_path_factory.mktemp("bundles") / "pump"
    build_bundle(trained_run, out, target="x86_64", version="1.0.0")
    return out
