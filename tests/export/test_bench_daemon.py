"""The daemon bench's arithmetic (the bench itself runs in ``make bench``)."""

from __future__ import annotations

import pytest

from export.bench.daemon import finish_time


def test_the_last_window_is_placed_by_the_rate_before_it_not_at_the_next_report():
    # 1,000 windows/s from t = 100; the 3,500th comes at 103.5, reported only at 104.0
    samples = [(100.0, 0), (101.0, 1000), (102.0, 2000), (103.0, 3000), (104.0, 3500)]
    assert finish_time(samples, 3500) == pytest.approx(103.5)


def test_a_run_shorter_than_one_report_takes_the_first_report_that_saw_it_done():
    assert finish_time([(100.0, 0), (100.8, 500)], 500) == pytest.approx(100.8)
    # never done (windows dropped): the rate up to the last report stands for the run
    assert finish_time([(100.0, 0), (101.0, 200)], 500) == pytest.approx(102.5)
