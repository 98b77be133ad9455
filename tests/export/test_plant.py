"""The generated process plant (``export.bench.plant``): what defaults do with a short, wide, slow plant."""

from __future__ import annotations

import numpy as np

from edge_aae.core.data import SensorData, assemble_series
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector
from export.bench.plant import FAULT_ROW, N_TEST, N_TRAIN, Plant, write_plant


def _series(plant: Plant, values: np.ndarray, start: float) -> SensorData:
    return assemble_series("plant.csv", plant.names, start + 180.0 * np.arange(len(values)), values, None)


def test_a_sensor_bias_on_a_slow_channel_is_caught_where_many_levels_are_rarely_seen():
    # half the plant's channels are slow with levels seen under 30 times in 500 rows; scoring them
    # all by shape (as the preset did) left a 3-spread temperature bias unflagged (recall 0.00)
    plant = Plant(0)
    det = AAEDetector(TrainConfig(threads=1)).fit(_series(plant, plant.run(1000, N_TRAIN), 0.0))
    picked = [c for c in det.config_.relative_channels.split(",") if c]
    assert len(picked) <= 2, picked
    start = 180.0 * (N_TRAIN + 100)
    normal = det.score(_series(plant, plant.run(2000, N_TEST), start))
    assert np.mean(normal.is_anomaly == 1) <= 0.02
    bias = det.score(_series(plant, plant.run(2005, N_TEST, "sensor_bias"), start))
    after = bias.ends >= FAULT_ROW + det.config_.window_len
    assert np.mean(bias.is_anomaly[after] == 1) >= 0.9


def test_the_plant_folder_has_every_fault_and_its_labels(tmp_path):
    folders = write_plant(tmp_path, seed=1)
    assert sorted(f.name for f in folders) == sorted(["normal", "feed_step", "variation", "drift", "sticky_valve",
                                                      "sensor_bias", "analyzer_decoupled"])
    header = (tmp_path / "drift" / "test.csv").read_text().splitlines()
    assert header[0].split(",")[-1] == "label"
    assert len(header) == N_TEST + 1
    labels = [int(line.rsplit(",", 1)[1]) for line in header[1:]]
    assert sum(labels) == N_TEST - FAULT_ROW
    assert labels[FAULT_ROW - 1] == 0
    assert (tmp_path / "normal" / "train.csv").read_text() == (tmp_path / "drift" / "train.csv").read_text()
