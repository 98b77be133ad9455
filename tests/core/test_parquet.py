"""Parquet input: the same series as the CSV it came from, and the CSV reader's errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_aae.core.data import load_many, load_series
from edge_aae.core.errors import DataError


def csv_to_parquet(src, dst, time_as_timestamp: bool = True, nulls: int = 0):
    data = load_series(src, label_col="label", max_nan_run=0)
    cols = {}
    if time_as_timestamp:
        cols["timestamp"] = pa.array((data.timestamps * 1e9).astype("int64"), type=pa.timestamp("ns", tz="UTC"))
    else:
        cols["ts"] = pa.array(data.timestamps)
    for j, c in enumerate(data.channels):
        v = data.values[:, j].copy()
        mask = np.zeros(len(v), dtype=bool)
        mask[100:100 + nulls] = True
        cols[c] = pa.array(v, mask=mask)
    cols["label"] = pa.array(data.labels.astype("int64"))
    cols["operator"] = pa.array(["shift-a"] * len(v))  # a text column: not a channel
    pq.write_table(pa.table(cols), dst)
    return data


def test_parquet_reads_as_the_csv_it_came_from(synth_dir, tmp_path):
    for as_ts in (True, False):
        dst = tmp_path / f"test-{as_ts}.parquet"
        csv = csv_to_parquet(synth_dir / "test.csv", dst, time_as_timestamp=as_ts)
        got = load_series(dst, label_col="label", max_nan_run=0)
        assert got.channels == csv.channels  # the text column is skipped, the label is not a channel
        np.testing.assert_allclose(got.timestamps, csv.timestamps, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.values, csv.values)
        np.testing.assert_array_equal(got.labels, csv.labels)
        assert got.segments == csv.segments


def test_parquet_nulls_are_missing_values_and_text_channels_are_refused(synth_dir, tmp_path):
    dst = tmp_path / "gappy.parquet"
    csv_to_parquet(synth_dir / "test.csv", dst, nulls=3)
    got = load_series(dst)  # a 3-row gap is interpolated like the CSV reader's
    assert np.isfinite(got.values).all()
    assert len(got.segments) == 1
    with pytest.raises(DataError, match="'operator' is not numeric"):
        load_series(dst, channels=[got.channels[0], "operator"])
    with pytest.raises(DataError, match="time column 'nope' not found"):
        load_series(dst, time_col="nope")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_series(tmp_path / "junk.parquet")


def test_train_takes_a_folder_of_parquet_files(synth_dir, tmp_path):
    folder = tmp_path / "plant"
    folder.mkdir()
    csv_to_parquet(synth_dir / "test.csv", folder / "2026-01.parquet")
    assert len(load_many([folder]).segments) == 1
    p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "train", "--data", str(folder), "--out",
                        str(tmp_path / "run"), "--epochs", "1", "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "run" / "model.json").is_file()


@pytest.mark.parametrize("labels", [[False, True, True], ["false", "True", "1"]])
def test_parquet_labels_as_booleans_or_words(tmp_path, labels):
    dst = tmp_path / "x.parquet"
    pq.write_table(pa.table({"timestamp": [0.0, 1.0, 2.0], "a": [0.5, 1.5, 2.5], "label": labels}), dst)
    assert load_series(dst, label_col="label").labels.tolist() == [0, 1, 1]


def test_parquet_text_labels_name_the_row(tmp_path):
    dst = tmp_path / "x.parquet"
    pq.write_table(pa.table({"timestamp": [0.0, 1.0], "a": [0.5, 1.5], "label": ["normal", "anomaly"]}), dst)
    with pytest.raises(DataError, match=r"label column 'label': row 0 is 'normal', not 0 or 1"):
        load_series(dst, label_col="label")
