import numpy as np
import pytest

from edge_aae.core.data import load_series
from edge_aae.core.errors import DataError, ModelMismatchError, UsageError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("delim", [",", ";", "\t"])
def test_delimiter_is_sniffed(tmp_path, delim):
    rows = ["timestamp", "a", "b"]
    lines = [delim.join(rows)] + [delim.join([str(100 + i), str(i * 0.5), str(-i)]) for i in range(20)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    assert d.channels == ["a", "b"]
    assert d.timestamps[0] == 100
    assert d.values.shape == (20, 2)


@pytest.mark.parametrize("delim", [";", "\t"])
def test_decimal_commas_are_read_as_decimal_points(tmp_path, delim, caplog):
    lines = [delim.join(["time", "a", "b", "label"])]
    lines += [delim.join([str(i), f"{i},5", "" if i == 3 else f"-{i},25", "0"]) for i in range(20)]
    with caplog.at_level("INFO"):
        d = load_series(write(tmp_path, "eu.csv", "\n".join(lines)), label_col="label")
    assert d.channels == ["a", "b"]
    np.testing.assert_allclose(d.values[:3], [[0.5, -0.25], [1.5, -1.25], [2.5, -2.25]])
    assert d.values[3, 1] == pytest.approx(-3.25)  # one missing value, interpolated
    assert "',' is the decimal separator" in caplog.text
    headerless = write(tmp_path, "eu.txt", "".join(f"{i},5{delim}{i},25\n" for i in range(20)))
    d = load_series(headerless)
    assert d.channels == ["ch1", "ch2"]
    np.testing.assert_allclose(d.values[1], [1.5, 1.25])


@pytest.mark.parametrize(("fmt", "step"), [("{d:02d}.02.2024 10:00:{s:02d}", 1.0),
                                           ("2024/02/{d:02d} 10:{s:02d}", 60.0)])
def test_dotted_and_year_first_dates(tmp_path, fmt, step):
    lines = ["datetime;a"] + [f"{fmt.format(d=1, s=i)};{i},5" for i in range(20)]
    d = load_series(write(tmp_path, "de.csv", "\n".join(lines)))
    assert d.timestamps[1] - d.timestamps[0] == pytest.approx(step)
    assert d.timestamps[0] == pytest.approx(1706781600.0)  # 2024-02-01 10:00:00 UTC
    np.testing.assert_allclose(d.values[:2, 0], [0.5, 1.5])


def test_ambiguous_dates_are_refused_with_the_way_out(tmp_path):
    lines = ["date,a"] + [f"02/01/2024 10:00:{i:02d},{i}" for i in range(20)]
    with pytest.raises(DataError, match=r"x.csv:2: column 'date': '02/01/2024 10:00:00' .* ambiguous .* ISO 8601"):
        load_series(write(tmp_path, "x.csv", "\n".join(lines)))


def test_points_stay_decimal_points_beside_semicolons(tmp_path):
    lines = ["time;a;note"] + [f"{i};{i}.5;x,y" for i in range(20)]  # a comma in text is no decimal comma
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    assert d.channels == ["a"]
    np.testing.assert_allclose(d.values[:2, 0], [0.5, 1.5])


def test_iso_datetimes_and_label_column_excluded_from_channels(tmp_path):
    lines = ["datetime;x;y;anomaly;changepoint"]
    lines += [f"2020-02-08 13:30:{i:02d};{i};{2 * i};0;0" for i in range(10)]
    d = load_series(write(tmp_path, "skab.csv", "\n".join(lines)), label_col="anomaly")
    assert d.channels == ["x", "y"]
    assert d.timestamps[1] - d.timestamps[0] == pytest.approx(1.0)
    assert d.labels is not None
    assert d.labels.sum() == 0


def test_headerless_smd_layout(tmp_path):
    d = load_series(write(tmp_path, "omi.txt", "\n".join("0.1,0.2,0.3" for _ in range(5))))
    assert d.channels == ["ch1", "ch2", "ch3"]
    assert d.sample_period_s == 1.0


def test_channels_option_selects_and_orders(tmp_path):
    lines = ["t,a,b,c"] + [f"{i},{i},{i},{i}" for i in range(5)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)), time_col="t", channels=["c", "a"])
    assert d.channels == ["c", "a"]


def test_short_nan_gap_is_interpolated_long_gap_splits(tmp_path):
    vals = [str(float(i)) for i in range(40)]
    vals[5] = ""                              # 1 missing: filled
    for i in range(20, 30):                   # 10 missing: splits the series
        vals[i] = "nan"
    lines = ["timestamp,a"] + [f"{i},{v}" for i, v in enumerate(vals)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)), max_nan_run=5)
    assert d.values[5, 0] == pytest.approx(5.0)
    assert d.segments == [(0, 20), (30, 40)]


def test_timestamp_gap_splits_the_series(tmp_path):
    ts = list(range(10)) + list(range(500, 510))
    lines = ["timestamp,a"] + [f"{t},{i}" for i, t in enumerate(ts)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    assert d.segments == [(0, 10), (10, 20)]


def test_a_bad_cell_is_a_missing_value_named_once(tmp_path, caplog):
    lines = (["timestamp,a,b"] + [f"{i},{i},{i}" for i in range(50)]
             + ["50,1,oops", "51,2,n/a", "52,,#N/A", "53,3,ERR"])
    for extra in ([], ['54,"4",5']):  # unquoted: numpy's parser; quoted: the csv module
        caplog.clear()
        d = load_series(write(tmp_path, "x.csv", "\n".join(lines + extra)), max_nan_run=0)
        assert d.channels == ["a", "b"]  # the column is kept, not dropped
        assert np.isnan(d.values[50:54, 1]).all()
        assert np.isnan(d.values[52, 0])  # an empty cell: missing, silently
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1, warnings
        assert "x.csv: column 'b': 4 cell(s) that are not numbers" in warnings[0]
        assert "line 52 ('oops')" in warnings[0]


def test_a_text_column_is_skipped_not_read_as_missing(tmp_path):
    lines = ["timestamp,a,state"] + [f"{i},{i},{'run' if i % 2 else 'idle'}" for i in range(10)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    assert d.channels == ["a"]


def test_iso_times_and_labels_on_the_fast_path(tmp_path):
    lines = ["datetime;x;label"] + [f"2024-01-01T00:00:{i:02d};{i}.5;{int(i > 5)}" for i in range(10)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)), label_col="label")
    assert d.timestamps[1] - d.timestamps[0] == 1.0
    assert d.labels.tolist() == [0] * 6 + [1] * 4
    np.testing.assert_allclose(d.values[:, 0], np.arange(10) + 0.5)


def test_undetectable_delimiter(tmp_path):
    with pytest.raises(DataError, match="cannot detect the delimiter"):
        load_series(write(tmp_path, "x.csv", "a b c\n1 2 3\n4 5 6\n"))


def test_missing_file():
    with pytest.raises(UsageError, match="file not found"):
        load_series("/nonexistent/data.csv")


def test_label_must_be_binary(tmp_path):
    lines = ["timestamp,a,label"] + [f"{i},{i},0" for i in range(3)] + ["3,3,2"]
    with pytest.raises(DataError, match=r"x\.csv:5: label column 'label': '2' is not 0 or 1"):
        load_series(write(tmp_path, "x.csv", "\n".join(lines)), label_col="label")


@pytest.mark.parametrize("words", [("False", "True"), ("false", "true"), ("FALSE", "TRUE"), ("0.0", "1.0")])
def test_labels_written_as_booleans(tmp_path, words):
    """pandas writes a bool column as False/True: the labels are read, not turned into missing values."""
    lines = ["timestamp,a,label"] + [f"{i},{i}.5,{words[int(i >= 7)]}" for i in range(10)]
    d = load_series(write(tmp_path, "x.csv", "\n".join(lines)), label_col="label")
    assert d.labels.tolist() == [0] * 7 + [1] * 3
    np.testing.assert_allclose(d.values[:, 0], np.arange(10) + 0.5)


@pytest.mark.parametrize(("cell", "hint"), [("normal", "nor true or false"), ("-1", "-1/1 labels differ")])
def test_label_words_are_not_guessed(tmp_path, cell, hint):
    lines = ["timestamp,a,label"] + [f"{i},{i},1" for i in range(3)] + [f"3,3,{cell}"]
    with pytest.raises(DataError, match=rf"x\.csv:5: label column 'label': '{cell}' is not 0 or 1.*{hint}"):
        load_series(write(tmp_path, "x.csv", "\n".join(lines)), label_col="label")


def test_timestamps_going_backwards(tmp_path):
    lines = ["timestamp,a", "1,1", "2,2", "1.5,3"]
    with pytest.raises(DataError, match=r"x\.csv:4: column 'timestamp': timestamp goes backwards"):
        load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    lines = ["timestamp,a", "1700000200.5,1", "1700000201,2", "1700000200,3"]
    with pytest.raises(DataError, match=r"\(1700000201 -> 1700000200\)"):  # unix seconds in full, not 1.7e+09
        load_series(write(tmp_path, "y.csv", "\n".join(lines)))


def test_ragged_row(tmp_path):
    with pytest.raises(DataError, match=r"x\.csv:3: 2 fields, header has 3"):
        load_series(write(tmp_path, "x.csv", "t,a,b\n1,2,3\n4,5\n"))


def test_select_missing_channel(tmp_path):
    d = load_series(write(tmp_path, "x.csv", "t,a\n1,2\n2,3\n"))
    with pytest.raises(ModelMismatchError, match="missing channel column"):
        d.select_channels(["a", "zz"])


def test_fingerprint_changes_with_data(tmp_path):
    a = load_series(write(tmp_path, "a.csv", "t,a\n1,2\n2,3\n"))
    b = load_series(write(tmp_path, "b.csv", "t,a\n1,2\n2,3.5\n"))
    assert a.fingerprint() != b.fingerprint()
    assert np.isfinite(a.values).all()


def test_several_files_are_one_series_whose_windows_never_span_two(tmp_path):
    from edge_aae.core.data import load_many

    for k, name in enumerate(["day2.csv", "day1.csv"]):  # out of name order: put in time order
        start = 1_000 if name == "day2.csv" else 0
        rows = ["timestamp,a,b"] + [f"{start + i},{k + i},{i}" for i in range(30)]
        (tmp_path / "in").mkdir(exist_ok=True)
        write(tmp_path / "in", name, "\n".join(rows))
    (tmp_path / "in" / "notes.md").write_text("not data")
    for spec in ([tmp_path / "in"], [str(tmp_path / "in" / "day*.csv")],
                 [tmp_path / "in" / "day1.csv", tmp_path / "in" / "day2.csv"]):
        d = load_many(spec)
        assert d.n_rows == 60
        assert d.segments == [(0, 30), (30, 60)]
        assert d.timestamps[0] == 0
        assert d.timestamps[30] == 1_000


def test_several_files_must_agree(tmp_path):
    from edge_aae.core.data import load_many

    write(tmp_path, "a.csv", "timestamp,a\n" + "\n".join(f"{i},{i}" for i in range(10)))
    write(tmp_path, "b.csv", "timestamp,z\n" + "\n".join(f"{i + 100},{i}" for i in range(10)))
    write(tmp_path, "c.csv", "timestamp,a\n" + "\n".join(f"{i + 5},{i}" for i in range(10)))
    with pytest.raises(DataError, match="b.csv: channels z differ"):
        load_many([tmp_path / "a.csv", tmp_path / "b.csv"])
    with pytest.raises(DataError, match="c.csv: starts before .*a.csv ends"):
        load_many([tmp_path / "a.csv", tmp_path / "c.csv"])
    with pytest.raises(UsageError, match="matches no file"):
        load_many([str(tmp_path / "none*.csv")])


def test_a_quoted_number_past_the_probed_rows_is_a_number(tmp_path):
    lines = ["timestamp,a,b"] + [f"{i},{i},{i}" for i in range(300)] + ['300,"7",8']
    d = load_series(write(tmp_path, "q.csv", "\n".join(lines)))
    assert d.values[-1].tolist() == [7.0, 8.0]


def test_columns_left_out_are_named_with_why(tmp_path, caplog):
    lines = ["timestamp,a,status,dead"] + [f"{i},{i * 0.5},{'ok' if i % 3 else 'warn'}," for i in range(30)]
    with caplog.at_level("WARNING"):
        data = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
    assert data.channels == ["a"]
    text = caplog.text
    assert "status are not numeric and are not modelled" in text
    assert "dead hold no values" in text


def test_a_data_frame_index_column_is_not_a_channel(tmp_path, caplog):
    for name, start in (("", 0), ("Unnamed: 0", 3000)):
        lines = [f"{name},timestamp,a"] + [f"{start + i},{1.7e9 + i},{(i * 7) % 5}" for i in range(40)]
        with caplog.at_level("WARNING"):
            data = load_series(write(tmp_path, "x.csv", "\n".join(lines)))
        assert data.channels == ["a"]
        assert "look like a row index" in caplog.text
    lines = ["index,timestamp,a"] + [f"{i * 2},{1.7e9 + i},{i % 5}" for i in range(40)]  # not counting by one
    assert load_series(write(tmp_path, "y.csv", "\n".join(lines))).channels == ["index", "a"]


def test_epoch_milliseconds_are_read_as_seconds(tmp_path):
    lines = ["timestamp,a"] + [f"{1_700_000_000_000 + 500 * i},{i % 3}" for i in range(20)]
    data = load_series(write(tmp_path, "ms.csv", "\n".join(lines)))
    assert data.timestamps[0] == 1_700_000_000.0
    assert data.sample_period_s == 0.5
    lines = ["timestamp,a"] + [f"{1_700_000_000 + i},{i % 3}" for i in range(20)]  # seconds stay seconds
    assert load_series(write(tmp_path, "s.csv", "\n".join(lines))).timestamps[0] == 1_700_000_000.0


def test_label_like_columns_are_never_channels(tmp_path):
    lines = ["timestamp,a,Attack,is_outlier"] + [f"{1.7e9 + i},{i % 5},0,0" for i in range(20)]
    assert load_series(write(tmp_path, "x.csv", "\n".join(lines))).channels == ["a"]
