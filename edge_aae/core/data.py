"""Reading multivariate sensor series from CSV or headerless (SMD-layout) text.

Rows become a :class:`SensorData`: timestamps in unix seconds, a float64 value
matrix ``(n_rows, n_channels)``, optional 0/1 labels, and the *segments*, the
row ranges over which windows may be formed. Short NaN runs (at most
``max_nan_run`` rows) are linearly interpolated; longer runs, and timestamp gaps
larger than ``max_gap_factor`` times the median sample period, split the series
so that no window spans them.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.errors import DataError, ModelMismatchError, UsageError

log = logging.getLogger(__name__)

TIME_COLUMN_NAMES = ("timestamp", "time", "datetime", "date", "ts")
LABEL_COLUMN_NAMES = ("label", "anomaly", "changepoint", "is_anomaly", "anomaly_label", "attack", "is_attack",
                      "outlier", "is_outlier")  # never a channel: a label must not leak into the model
DELIMITERS = ",;\t"
MISSING_CELLS = ("", "nan", "na", "null", "none")  # a missing value, silently
# Any other cell that is not a number (n/a, -, #N/A, ERR, ...) in a numeric column is a missing
# value too, with one warning per column that names the file, the column and its first row.
PROBE_ROWS = 200  # rows read to decide which columns are numeric
NUMERIC_SHARE = 0.9  # a column is numeric when this share of its probed non-missing cells are numbers


@dataclass
class SensorData:
    """One series of readings.

    Attributes:
        path: the file it came from (for messages).
        channels: channel names, in column order of ``values``.
        timestamps: ``(n_rows,)`` unix seconds, non-decreasing.
        values: ``(n_rows, n_channels)`` float64, NaN only in rows outside segments.
        labels: ``(n_rows,)`` int8 0/1, or None.
        segments: half-open ``(start, end)`` row ranges that windows may span.
        sample_period_s: median spacing of the timestamps.

    """

    path: str
    channels: list[str]
    timestamps: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None
    segments: list[tuple[int, int]]
    sample_period_s: float

    @property
    def n_rows(self) -> int:
        """Number of rows read."""
        return int(self.values.shape[0])

    def select_channels(self, names: Sequence[str]) -> SensorData:
        """A view with only ``names``, in that order.

        Raises:
            ModelMismatchError: a name is not a column of this file.

        """
        missing = [n for n in names if n not in self.channels]
        if missing:
            raise ModelMismatchError(
                f"{self.path}: missing channel column(s) {', '.join(missing)}; "
                f"the model needs {', '.join(names)}; file has {', '.join(self.channels)}")
        idx = [self.channels.index(n) for n in names]
        return SensorData(self.path, list(names), self.timestamps, self.values[:, idx],
                          self.labels, self.segments, self.sample_period_s)

    def slice_rows(self, start: int, end: int) -> SensorData:
        """Rows ``[start, end)`` with segments clipped to them."""
        segs = [(max(a, start) - start, min(b, end) - start)
                for a, b in self.segments if min(b, end) > max(a, start)]
        labels = None if self.labels is None else self.labels[start:end]
        return SensorData(self.path, list(self.channels), self.timestamps[start:end],
                          self.values[start:end], labels, segs, self.sample_period_s)

    def fingerprint(self) -> str:
        """sha256 over channel names and values: identifies the training data."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.channels).encode())
        for i in range(0, self.values.shape[0], 65536):  # a chunk at a time: no copy of a long series
            h.update(np.ascontiguousarray(np.nan_to_num(self.values[i:i + 65536], nan=-1e300)).tobytes())
        return h.hexdigest()


def load_series(path: str | Path, *, time_col: str | None = None,
                channels: Sequence[str] | None = None, label_col: str | None = None,
                max_nan_run: int = 5, max_gap_factor: float = 5.0) -> SensorData:
    """Read a CSV (header, delimiter sniffed) or headerless numeric text file.

    Args:
        path: the file.
        time_col: timestamp column; default: a column named like ``timestamp``,
            ``time``, ``datetime``; none found means one row per second.
        channels: channel columns; default: every column but time and label columns.
        label_col: a 0/1 label column; default: none.
        max_nan_run: longest run of missing values (rows) that is interpolated.
        max_gap_factor: a timestamp step above this many median periods splits the series.

    Raises:
        UsageError: the file does not exist.
        DataError: the file cannot be parsed; the message names file, line and column.

    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: is a folder; give a CSV or text file")
    if not p.is_file():
        raise UsageError(f"{p}: file not found")
    if p.suffix.lower() == ".parquet":
        return _load_parquet(p, time_col=time_col, channels=channels, label_col=label_col,
                             max_nan_run=max_nan_run, max_gap_factor=max_gap_factor)
    try:
        lines = _head_lines(p, PROBE_ROWS + 1)  # the body is streamed to the parser, never held as text
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not a text file ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise DataError(f"{p}: file is empty")
    delimiter = _sniff_delimiter(p, lines)
    head_rows = list(csv.reader(io.StringIO("\n".join(lines[:PROBE_ROWS + 1])), delimiter=delimiter))
    decimal_comma = delimiter != "," and _decimal_comma(head_rows)
    if decimal_comma:  # 0,5 for 0.5 (spreadsheet exports in many locales): read as such, said once
        log.info("%s: ',' is the decimal separator (delimiter %r)", p, delimiter)
        first_row = [c.replace(",", ".") for c in head_rows[0]]
        head_rows = [first_row if all(_is_float(c.strip()) for c in first_row) else head_rows[0],
                     *([c.replace(",", ".") for c in row] for row in head_rows[1:])]
    first = [c.strip() for c in head_rows[0]]
    headerless = all(_is_float(c) for c in first)
    if headerless:
        header = [f"ch{i + 1}" for i in range(len(first))]
        line0 = 1
    else:
        header = first
        line0 = 2
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{p}: duplicate column name(s) {', '.join(dupes)}")
    if len(lines) < line0:
        raise DataError(f"{p}: no data rows")
    probe = head_rows[line0 - 1:]
    for i, row in enumerate(probe):
        if len(row) != len(header):
            raise DataError(f"{p}:{i + line0}: {len(row)} fields, header has {len(header)} "
                            f"(delimiter {delimiter!r})")
    columns = {name: [r[j].strip() for r in probe] for j, name in enumerate(header)}

    if time_col is not None and time_col not in columns:
        raise DataError(f"{p}: time column {time_col!r} not found; columns: {', '.join(header)}")
    if time_col is None and not headerless:
        time_col = next((h for h in header if h.strip().lower() in TIME_COLUMN_NAMES), None)
    if label_col is not None and label_col not in columns:
        raise DataError(f"{p}: label column {label_col!r} not found; columns: {', '.join(header)}")

    excluded = {time_col, label_col} | {h for h in header if h.strip().lower() in LABEL_COLUMN_NAMES}
    if channels is None:
        channels = [h for h in header if h not in excluded]
        numeric = [h for h in channels if _mostly_numeric(columns[h])]
        skipped = [h for h in channels if h not in numeric]
        index_like = [h for h in numeric if _is_row_index(h, columns[h])]
        if index_like:
            log.warning("%s: column(s) %s look like a row index (no name or 'Unnamed', counting up by one) and "
                        "are not modelled (pass --channels to keep them)", p, ", ".join(repr(h) for h in index_like))
            numeric = [h for h in numeric if h not in index_like]
        empty = [h for h in skipped if all(c.lower() in MISSING_CELLS for c in columns[h][:PROBE_ROWS])]
        if empty:
            log.warning("%s: column(s) %s hold no values in the first %d rows and are not modelled", p,
                        ", ".join(empty), PROBE_ROWS)
        if len(empty) < len(skipped):
            log.warning("%s: column(s) %s are not numeric and are not modelled (pass --channels to choose)", p,
                        ", ".join(h for h in skipped if h not in empty))
        channels = numeric
    else:
        missing = [c for c in channels if c not in columns]
        if missing:
            raise DataError(f"{p}: channel column(s) {', '.join(missing)} not found; "
                            f"columns: {', '.join(header)}")
        for c in channels:
            if not _mostly_numeric(columns[c]):  # asked for by name, but text: say where, do not guess
                cells_in = [(i, v) for i, v in enumerate(columns[c]) if v.lower() not in MISSING_CELLS]
                if not cells_in:
                    raise DataError(f"{p}: column {c!r}: no values in its first {len(columns[c])} rows")
                i, cell = next((i, v) for i, v in cells_in if not _is_float(v))
                raise DataError(f"{p}:{i + line0}: column {c!r}: value {cell!r} is not numeric "
                                "(the column is mostly text)")
    if not channels:
        raise DataError(f"{p}: no numeric channel columns found")

    wanted = [*channels, *(c for c in (time_col, label_col) if c is not None)]
    text_cols = {header.index(c) for c in (time_col, label_col)  # read as text: ISO times, true/false labels
                 if c is not None and not _mostly_numeric(columns[c])}
    def body() -> Iterator[str]:
        lines = _body_lines(p, line0 - 1)
        return (ln.replace(",", ".") for ln in lines) if decimal_comma else lines

    try:
        parsed = _fast_parse(p, body, delimiter, [header.index(c) for c in wanted], text_cols, header, line0)
        if parsed is None:  # ragged rows: the careful parser says where
            parsed = _careful_parse(p, list(body()), delimiter, header, wanted, line0)
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not a text file ({exc.reason} at byte {exc.start} of a line)") from None
    cells = dict(zip(wanted, parsed, strict=True))
    block = _shared_block([cells[c] for c in channels])
    if block is not None:  # the parser's own array: its first columns are the channels
        values = block[:, :len(channels)]
    else:
        values = np.empty((len(parsed[0]), len(channels)), dtype=np.float64)
        for j, name in enumerate(channels):
            values[:, j] = _numeric(p, name, cells[name], line0)
    if time_col is None:
        timestamps = np.arange(values.shape[0], dtype=np.float64)
    else:
        timestamps = _parse_times(p, time_col, cells[time_col], line0)
    labels = None if label_col is None else _parse_labels(p, label_col, cells[label_col], line0)
    if block is not None:  # nothing kept may pin the parser's block: it is as big as the data
        timestamps = timestamps.copy() if np.shares_memory(timestamps, block) else timestamps
        if labels is not None and np.shares_memory(labels, block):
            labels = labels.copy()
    del cells, parsed
    return assemble_series(str(p), list(channels), timestamps, values, labels,
                           max_nan_run=max_nan_run, max_gap_factor=max_gap_factor, owned=True)


def find_label_column(path: str | Path, preferred: str = "label") -> str | None:
    """The label column of a CSV or Parquet file, read from its header alone.

    ``preferred`` if the header has it, else the first of :data:`LABEL_COLUMN_NAMES` found (any
    case); ``None`` for a headerless file or when none is found.

    Raises:
        UsageError: the file does not exist.
        DataError: the file is not text or is empty.

    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: file not found")
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        header = list(pq.read_schema(p).names)
    else:
        try:
            lines = _head_lines(p, 2)
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not a text file ({exc.reason} at byte {exc.start})") from None
        if not lines:
            raise DataError(f"{p}: file is empty")
        header = [c.strip() for c in next(csv.reader(io.StringIO(lines[0]), delimiter=_sniff_delimiter(p, lines)))]
    if preferred in header:
        return preferred
    by_name = {h.lower(): h for h in header}
    return next((by_name[n] for n in LABEL_COLUMN_NAMES if n in by_name), None)


def _head_lines(path: Path, n: int) -> list[str]:
    """The first ``n`` non-blank lines (BOM and line ends stripped)."""
    out: list[str] = []
    with path.open(encoding="utf-8-sig") as f:
        for ln in f:
            if ln.strip():
                out.append(ln.rstrip("\r\n"))
                if len(out) >= n:
                    break
    return out


def _body_lines(path: Path, skip: int) -> Iterator[str]:
    """Non-blank lines after the first ``skip`` of them, read as the parser asks (not all at once)."""
    with path.open(encoding="utf-8-sig") as f:
        seen = 0
        for ln in f:
            if ln.strip():
                seen += 1
                if seen > skip:
                    yield ln.rstrip("\r\n")


def _shared_block(columns: list[np.ndarray]) -> np.ndarray | None:
    """The float64 2-D array whose first columns, in order, are exactly ``columns``; None if there is none."""
    base = columns[0].base if columns else None
    if not isinstance(base, np.ndarray) or base.ndim != 2 or base.dtype != np.float64 \
            or base.shape[1] < len(columns):
        return None
    for j, c in enumerate(columns):
        col = base[:, j]
        if c.base is not base or c.strides != col.strides or c.ctypes.data != col.ctypes.data:
            return None
    return base


def _load_parquet(p: Path, *, time_col: str | None, channels: Sequence[str] | None, label_col: str | None,
                  max_nan_run: int, max_gap_factor: float) -> SensorData:
    """A Parquet file, with the CSV reader's rules for the time, label and channel columns.

    Numeric columns are channels; a timestamp column (Parquet timestamp type, numbers of seconds,
    or text the CSV reader understands) is the time; nulls are missing values.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{p}: reading Parquet needs pyarrow (pip install 'edge-aae[parquet]')") from None
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{p}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    header = list(table.column_names)
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{p}: duplicate column name(s) {', '.join(dupes)}")
    if table.num_rows == 0:
        raise DataError(f"{p}: no data rows")
    for name, what in ((time_col, "time"), (label_col, "label")):
        if name is not None and name not in header:
            raise DataError(f"{p}: {what} column {name!r} not found; columns: {', '.join(header)}")
    if time_col is None:
        time_col = next((h for h in header if h.strip().lower() in TIME_COLUMN_NAMES), None)

    def numeric(name: str) -> bool:
        t = table.schema.field(name).type
        return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))

    excluded = {time_col, label_col} | {h for h in header if h.strip().lower() in LABEL_COLUMN_NAMES}
    if channels is None:
        channels = [h for h in header if h not in excluded and numeric(h)]
    else:
        missing = [c for c in channels if c not in header]
        if missing:
            raise DataError(f"{p}: channel column(s) {', '.join(missing)} not found; columns: {', '.join(header)}")
        text = [c for c in channels if not numeric(c)]
        if text:
            raise DataError(f"{p}: column {text[0]!r} is not numeric (Parquet type "
                            f"{table.schema.field(text[0]).type})")
    if not channels:
        raise DataError(f"{p}: no numeric channel columns found")
    values = np.column_stack([table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False)
                              for c in channels]).astype(np.float64)
    if time_col is None:
        timestamps = np.arange(table.num_rows, dtype=np.float64)
    else:
        col = table.column(time_col)
        if pa.types.is_timestamp(col.type):  # nulls become NaN, which _parse_times reports by row
            cells = col.cast(pa.timestamp("ns")).cast(pa.int64()).cast(pa.float64(), safe=False).to_numpy(
                zero_copy_only=False) / 1e9
        elif numeric(time_col):
            cells = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            cells = np.asarray(col.cast(pa.string()).to_pylist(), dtype=object)
        timestamps = _parse_times(p, time_col, cells, 1)
    labels = None
    if label_col is not None:
        col = table.column(label_col)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):  # "true"/"false", "0"/"1"
            words = [_label_value(c) for c in col.to_pylist()]
            bad_row = next((i for i, w in enumerate(words) if w is None), None)
            if bad_row is not None:
                cell = str(col[bad_row].as_py())
                raise DataError(f"{p}: label column {label_col!r}: row {bad_row} is {cell!r}, not 0 or 1 (nor true "
                                f"or false){_label_hint(cell)}")
            raw = np.asarray(words, dtype=np.float64)
        else:
            raw = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isin(raw, (0.0, 1.0)))
        if bad.size:
            raise DataError(f"{p}: label column {label_col!r}: row {int(bad[0])} is {raw[bad[0]]!r}, not 0 or 1"
                            f"{_label_hint(str(raw[bad[0]]))}")
        labels = raw.astype(np.int8)
    return assemble_series(str(p), list(channels), timestamps, values, labels,
                           max_nan_run=max_nan_run, max_gap_factor=max_gap_factor)


def assemble_series(path: str, channels: list[str], timestamps: np.ndarray, values: np.ndarray,
                    labels: np.ndarray | None, *, max_nan_run: int = 5,
                    max_gap_factor: float = 5.0, owned: bool = False) -> SensorData:
    """Fill short NaN runs, find segments, and wrap arrays as :class:`SensorData`.

    ``values`` is copied unless ``owned`` (the caller hands it over: it may be filled in place).
    """
    values = (np.ascontiguousarray(values, dtype=np.float64) if owned
              else np.array(values, dtype=np.float64, copy=True))
    n = values.shape[0]
    valid = np.ones(n, dtype=bool)
    for j in range(values.shape[1]):
        valid &= _interpolate_short_gaps(values[:, j], max_nan_run)
    steps = np.diff(timestamps)
    positive = steps[steps > 0]
    period = float(np.median(positive)) if positive.size else 1.0
    breaks = np.flatnonzero(steps > max_gap_factor * period) + 1
    if breaks.size:
        log.info("%s: %d timestamp gap(s) over %.3g s split the series", path, breaks.size,
                 max_gap_factor * period)
    segments: list[tuple[int, int]] = []
    cuts = [0, *breaks.tolist(), n]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        segments.extend(_true_runs(valid[a:b], offset=a))
    return SensorData(path, channels, timestamps, values, labels, segments, period)


def _sniff_delimiter(path: Path, lines: list[str]) -> str:
    sample = "\n".join(lines[:50])
    try:
        found = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = None
    if found == ",":  # a headerless file of decimal-comma numbers split by ';' or tab: "0,5;1,25"
        for alt in ";\t":
            cells = [c.strip() for ln in lines[:50] for c in ln.split(alt)]
            if all(alt in ln for ln in lines[:50]) and all(
                    _COMMA_NUMBER.fullmatch(c) or _is_float(c) or c.lower() in MISSING_CELLS for c in cells):
                return alt
    if found is not None:
        return found
    counts = {d: lines[0].count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] > 0 and all(ln.count(best) > 0 for ln in lines[:50]):
        return best  # ragged rows are then reported with their line numbers
    if all(_is_float(ln.strip()) for ln in lines[:50]):
        return ","  # a single numeric column
    raise DataError(f"{path}: cannot detect the delimiter (tried ',', ';', tab)")


_COMMA_NUMBER = re.compile(r"[+-]?\d+,\d+(?:[eE][+-]?\d+)?")
_POINT_NUMBER = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")


def _decimal_comma(rows: list[list[str]]) -> bool:
    """Whether the data rows write numbers with ',' for the decimal point (and none with '.')."""
    cells = [c.strip() for row in rows for c in row]
    return any(_COMMA_NUMBER.fullmatch(c) for c in cells) and not any(_POINT_NUMBER.fullmatch(c) for c in cells)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_row_index(name: str, cells: list[str]) -> bool:
    """A column written by a data frame's index: no name (or ``Unnamed: N``, ``index``), counting up by one."""
    if not (name.strip().lower() in ("", "index") or re.fullmatch(r"unnamed: ?\d+", name.strip().lower())):
        return False
    try:
        values = [int(c) for c in cells]
    except ValueError:
        return False
    return len(values) > 1 and all(b - a == 1 for a, b in zip(values, values[1:], strict=False))


def _mostly_numeric(cells: list[str]) -> bool:
    probe = [c for c in cells[:PROBE_ROWS] if c.lower() not in MISSING_CELLS]
    return bool(probe) and sum(_is_float(c) for c in probe) >= NUMERIC_SHARE * len(probe)


def _fast_parse(path: Path, body: Callable[[], Iterator[str]], delimiter: str, usecols: list[int], text_cols: set[int],
                header: list[str], line0: int) -> list[np.ndarray] | None:
    """The wanted columns: float arrays (NaN where missing), strings for ``text_cols`` (date-times).

    numpy's C parser (quoted cells included): several times faster and leaner than splitting
    cells in Python. A cell that is not a number becomes NaN with one warning per column (file,
    column, first line). None for ragged rows: the careful parser names their line.
    """
    read: dict[str, Any] = {"delimiter": delimiter, "comments": None, "quotechar": '"'}
    numeric = [c for c in usecols if c not in text_cols]
    bad: dict[int, list[Any]] = {}  # column -> [count, first row, first cell]

    def lenient(col: int) -> Any:
        row = [-1]

        def convert(cell: str) -> float:
            row[0] += 1
            try:
                return float(cell)
            except ValueError:
                if cell.strip().lower() not in MISSING_CELLS:
                    seen = bad.setdefault(col, [0, row[0], cell])
                    seen[0] += 1
                return math.nan
        return convert

    out: dict[int, np.ndarray] = {}
    try:
        if numeric:
            try:
                block = np.loadtxt(body(), usecols=numeric, dtype=np.float64, ndmin=2, **read)
            except ValueError:  # missing or bad cells: the same parser, one Python call per cell
                bad.clear()
                block = np.loadtxt(body(), usecols=numeric, dtype=np.float64, ndmin=2,
                                   converters={c: lenient(c) for c in numeric}, **read)
            out |= {c: block[:, j] for j, c in enumerate(numeric)}
        for c in text_cols:
            out[c] = np.char.strip(np.loadtxt(body(), usecols=[c], dtype=str, ndmin=1, **read))
    except ValueError:
        return None
    for col, (count, row, cell) in bad.items():
        log.warning("%s: column %r: %d cell(s) that are not numbers read as missing values, the first at "
                    "line %d (%r)", path, header[col], count, row + line0, str(cell)[:40])
    return [out[c] for c in usecols]


def _careful_parse(path: Path, body: list[str], delimiter: str, header: list[str], wanted: list[str],
                   line0: int) -> list[np.ndarray]:
    """The csv module, row by row: the fallback when numpy's parser gives up; names the line of a ragged row."""
    rows = list(csv.reader(io.StringIO("\n".join(body)), delimiter=delimiter))
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"{path}:{i + line0}: {len(row)} fields, header has {len(header)} "
                            f"(delimiter {delimiter!r})")
    return [np.array([r[header.index(name)].strip() for r in rows]) for name in wanted]


def _numeric(path: Path, name: str, cells: np.ndarray, line0: int) -> np.ndarray:
    """A channel as float64: missing cells and cells that are not numbers become NaN (one warning)."""
    if cells.dtype.kind == "f":
        out = cells.astype(np.float64)
    else:
        out = np.full(len(cells), np.nan)
        bad = []
        for i, c in enumerate(cells.tolist()):
            if c.lower() in MISSING_CELLS:
                continue
            try:
                out[i] = float(c)
            except ValueError:
                bad.append(i)
        if bad:
            log.warning("%s: column %r: %d cell(s) that are not numbers read as missing values, the first "
                        "at line %d (%r)", path, name, len(bad), bad[0] + line0, str(cells[bad[0]])[:40])
    out[~np.isfinite(out)] = np.nan
    return out


EPOCH_UNITS = ((1e17, 1e9, "nanoseconds"), (1e14, 1e6, "microseconds"), (1e11, 1e3, "milliseconds"))


def _epoch_seconds(path: Path, name: str, out: np.ndarray) -> np.ndarray:
    """Numeric timestamps in unix seconds: beyond 1e11 (the year 5138 in seconds) they are ms, µs or ns."""
    level = float(np.median(np.abs(out))) if out.size else 0.0
    for limit, per_second, unit in EPOCH_UNITS:
        if level > limit:
            log.info("%s: column %r holds unix %s; read as seconds", path, name, unit)
            return out / per_second
    return out


def _parse_times(path: Path, name: str, cells: np.ndarray, line0: int) -> np.ndarray:
    if cells.dtype.kind == "f":
        out = cells.astype(np.float64)
        if np.isnan(out).any():
            i = int(np.flatnonzero(np.isnan(out))[0])
            raise DataError(f"{path}:{i + line0}: column {name!r}: a timestamp is missing")
        return _check_forward(path, name, _epoch_seconds(path, name, out), out, line0)
    cells_list = [str(c) for c in cells.tolist()]
    out = np.empty(len(cells_list), dtype=np.float64)
    fmt: str | None = None  # the first non-ISO format that fitted, tried first from then on
    for i, c in enumerate(cells_list):
        try:
            out[i] = float(c)
            continue
        except ValueError:
            pass
        ts: datetime | None
        try:
            ts = datetime.fromisoformat(c)
        except ValueError:
            ts, fmt = _other_date_time(c, fmt)
            if ts is None:
                raise DataError(f"{path}:{i + line0}: column {name!r}: {c!r} is neither unix seconds nor a date-time "
                                "it can read (ISO 8601, DD.MM.YYYY or YYYY/MM/DD with a time); dates such as "
                                "01/02/2024 are ambiguous (day or month first): write them as ISO 8601, "
                                "2024-02-01 10:00:00") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        out[i] = ts.timestamp()
    return _check_forward(path, name, out, cells_list, line0)


# unambiguous date-times beside ISO 8601: dotted dates are day first, slashed ones here year first
OTHER_DATE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S.%f", "%d.%m.%Y %H:%M",
                      "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M")


def _other_date_time(cell: str, fmt: str | None) -> tuple[datetime | None, str | None]:
    """``cell`` read with ``fmt`` or the first of :data:`OTHER_DATE_FORMATS` that fits; (None, fmt) if none."""
    for f in ([fmt] if fmt else []) + [f for f in OTHER_DATE_FORMATS if f != fmt]:
        try:
            return datetime.strptime(cell.strip(), f), f
        except ValueError:
            continue
    return None, fmt


def _check_forward(path: Path, name: str, out: np.ndarray, cells: Sequence[str] | np.ndarray,
                   line0: int) -> np.ndarray:
    back = np.flatnonzero(np.diff(out) < 0)
    if back.size:
        i = int(back[0]) + 1
        shown = [f"{v:.15g}" if isinstance(v, float | np.floating) else str(v) for v in (cells[i - 1], cells[i])]
        raise DataError(f"{path}:{i + line0}: column {name!r}: timestamp goes backwards "
                        f"({shown[0]} -> {shown[1]})")
    return out


LABEL_WORDS = {"false": 0, "true": 1}  # any case; pandas writes a bool column as False/True


def _label_value(cell: object) -> int | None:
    """0 or 1 from a label cell: a number equal to 0 or 1, or ``true``/``false`` in any case; else None."""
    text = str(cell).strip().lower()
    if text in LABEL_WORDS:
        return LABEL_WORDS[text]
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def _parse_labels(path: Path, name: str, cells: np.ndarray, line0: int) -> np.ndarray:
    """0/1 labels from numbers, or from ``true``/``false`` in any case (one anomalous row is 1)."""
    if cells.dtype.kind == "f":
        ok = np.isin(cells, (0.0, 1.0))
        if ok.all():
            return cells.astype(np.int8)
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}:{i + line0}: label column {name!r}: '{float(cells[i]):g}' is not 0 or 1"
                        f"{_label_hint(str(float(cells[i])))}")
    out = np.empty(len(cells), dtype=np.int8)
    for i, c in enumerate(cells.tolist()):
        v = _label_value(c)
        if v is None:
            raise DataError(f"{path}:{i + line0}: label column {name!r}: {str(c)!r} is not 0 or 1 (nor true or "
                            f"false){_label_hint(str(c))}")
        out[i] = v
    return out


def _label_hint(cell: str) -> str:
    """What to do about a label cell that is not 0/1: the labels are the user's to map, never guessed."""
    if cell.strip() in ("-1", "-1.0"):
        return ("; -1/1 labels differ between tools (-1 is the anomaly for some, the normal class for others): "
                "write 1 for anomalous rows and 0 for normal ones")
    return "; write 1 for anomalous rows and 0 for normal ones"


def _interpolate_short_gaps(col: np.ndarray, max_run: int) -> np.ndarray:
    """Fill NaN runs of at most ``max_run`` rows in place; return the rows that are valid."""
    nan = np.isnan(col)
    if not nan.any():
        return np.ones(col.shape[0], dtype=bool)
    valid = ~nan
    idx = np.arange(col.shape[0])
    for start, end in _true_runs(nan):
        inside = start > 0 and end < col.shape[0]
        if inside and end - start <= max_run:
            valid[start:end] = True
    fill = nan & valid
    if fill.any():
        col[fill] = np.interp(idx[fill], idx[~nan], col[~nan])
    return np.asarray(valid, dtype=bool)


def _true_runs(mask: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """Half-open ranges where ``mask`` is True."""
    if mask.size == 0:
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a) + offset, int(b) + offset) for a, b in zip(edges[::2], edges[1::2], strict=True)]


DATA_SUFFIXES = (".csv", ".txt", ".tsv", ".parquet")


def expand_data_paths(specs: Sequence[str | Path]) -> list[Path]:
    """Files named by ``specs``: files as given, every data file of a folder, or a glob pattern.

    Raises:
        UsageError: a spec that matches nothing.

    """
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise UsageError(f"{p}: a folder without data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif any(ch in str(spec) for ch in "*?["):
            found = sorted(Path(m) for m in glob.glob(str(spec)) if Path(m).is_file())
            if not found:
                raise UsageError(f"{spec}: the pattern matches no file")
            out.extend(found)
        else:
            raise UsageError(f"{p}: file not found")
    return list(dict.fromkeys(out))


def load_many(specs: Sequence[str | Path], **kwargs: Any) -> SensorData:
    """Several files as one training series: each file is its own segment(s), no window spans two.

    Files are put in time order (by their first timestamp); they must have the same channels
    and must not overlap in time. ``kwargs`` go to :func:`load_series`.

    Raises:
        UsageError: a spec that matches nothing.
        DataError: channels that differ between files, or files that overlap in time.

    """
    paths = expand_data_paths(specs)
    if len(paths) == 1:
        return load_series(paths[0], **kwargs)
    parts = sorted((load_series(p, **kwargs) for p in paths), key=lambda d: float(d.timestamps[0]))
    first = parts[0]
    for d in parts[1:]:
        if d.channels != first.channels:
            raise DataError(f"{d.path}: channels {', '.join(d.channels)} differ from {first.path}'s "
                            f"({', '.join(first.channels)})")
    for a, b in zip(parts, parts[1:], strict=False):
        if b.timestamps[0] <= a.timestamps[-1]:
            raise DataError(f"{b.path}: starts before {a.path} ends (files overlap in time)")
    offsets = np.cumsum([0] + [d.n_rows for d in parts[:-1]])
    segments = [(int(a + o), int(b + o)) for d, o in zip(parts, offsets, strict=True) for a, b in d.segments]
    label_parts = [d.labels for d in parts if d.labels is not None]
    labels = np.concatenate(label_parts) if len(label_parts) == len(parts) else None
    periods = [d.sample_period_s for d in parts]
    if max(periods) > 1.1 * min(periods):
        log.warning("sample periods differ between files (%s); using their median",
                    ", ".join(f"{Path(d.path).name} {d.sample_period_s:g} s" for d in parts))
    log.info("%d files, %d rows, %d segments", len(parts), sum(d.n_rows for d in parts), len(segments))
    return SensorData(f"{len(parts)} files ({first.path}, ...)", list(first.channels),
                      np.concatenate([d.timestamps for d in parts]), np.concatenate([d.values for d in parts]),
                      labels, segments, float(np.median(periods)))
