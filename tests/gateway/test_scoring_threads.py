"""``runtime.threads``: a micro-batch split across single-threaded sessions scores as one session does."""

import threading

import numpy as np
import pytest

from edge_aae.gateway.scorer import MIN_SPLIT, OnnxModel


@pytest.mark.parametrize("n", [1, MIN_SPLIT, 2 * MIN_SPLIT - 1, 2 * MIN_SPLIT, 3 * MIN_SPLIT + 5, 257])
def test_split_batches_score_as_one_session(bundle, n):
    one = OnnxModel.open(bundle, threads=1)
    three = OnnxModel.open(bundle, threads=3)
    rng = np.random.default_rng(n)
    x = (rng.normal(size=(n, one.window_len, len(one.channels))) * 3 + 10).astype(np.float32)
    for a, b in zip(one.score_windows(x), three.score_windows(x), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)  # batch composition may move the last bits
    three.close()


def test_helper_threads_score_part_of_a_large_batch(bundle):
    model = OnnxModel.open(bundle, threads=2)
    seen: set[str] = set()
    for sess in model._helpers:  # record which thread runs the helper session
        run = sess.run

        def spy(*args, _run=run, **kwargs):
            seen.add(threading.current_thread().name)
            return _run(*args, **kwargs)

        sess.run = spy
    x = np.zeros((4 * MIN_SPLIT, model.window_len, len(model.channels)), np.float32)
    model.score_windows(x[:MIN_SPLIT])  # too small to split: no helper
    assert not seen
    model.score_windows(x)
    assert seen
    assert all(name.startswith("edge-aae-score") for name in seen)
    workers = list(model._pool._threads)
    model.close()
    assert workers
    assert not any(t.is_alive() for t in workers)
