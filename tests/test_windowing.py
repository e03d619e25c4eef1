"""Windows: exact length, fixed positions, independent of block size, streaming resampling."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.core.queues import DropOldestQueue
from monitor.core.resample import StreamResampler
from monitor.core.windowing import Windower, dbfs


def cut(samples: np.ndarray, rate: int, block: int, window: float = 5.0, hop: float = 1.0) -> list:
    res = StreamResampler(rate)
    win = Windower(window, hop)
    out = []
    for i in range(0, len(samples), block):
        out += list(win.push(res.process(samples[i : i + block])))
    out += list(win.push(res.process(np.zeros(0, np.float32), last=True)))
    return out


def test_twelve_seconds_at_48k_gives_eight_windows() -> None:
    x = np.random.default_rng(0).standard_normal(12 * 48000).astype(np.float32) * 0.1
    wins = cut(x, 48000, 4800)
    assert len(wins) == 8
    for i, (idx, start, w) in enumerate(wins):
        assert idx == i and start == i * 48000 and len(w) == 240000
        np.testing.assert_array_equal(w, x[start : start + 240000])  # 48 kHz passes through untouched


@pytest.mark.parametrize("rate", [44100, 16000, 48000])
def test_windows_do_not_depend_on_block_size(rate: int) -> None:
    x = (np.random.default_rng(1).standard_normal(9 * rate) * 0.1).astype(np.float32)
    ref = cut(x, rate, 512)
    for block in (160, 1024, 4410, 48000, len(x)):
        got = cut(x, rate, block)
        assert [(i, s) for i, s, _ in got] == [(i, s) for i, s, _ in ref]
        for (_, _, a), (_, _, b) in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
            assert len(a) == 240000


def test_streaming_resampler_matches_one_shot() -> None:
    import soxr

    rate = 44100
    t = np.arange(6 * rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    res = StreamResampler(rate)
    chunks = [res.process(x[i : i + 1000]) for i in range(0, len(x), 1000)]
    chunks.append(res.process(np.zeros(0, np.float32), last=True))
    streamed = np.concatenate(chunks)
    whole = soxr.resample(x, rate, 48000, quality="HQ")
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[1000 : n - 1000], whole[1000 : n - 1000], atol=1e-3)


def test_dbfs() -> None:
    assert dbfs(np.zeros(100, np.float32)) == -120.0
    assert abs(dbfs(np.ones(100, np.float32)) - 0.0) < 1e-9
    assert abs(dbfs(np.full(100, 0.1, np.float32)) + 20.0) < 1e-4


def test_queue_drops_oldest_and_counts() -> None:
    dropped = []
    q: DropOldestQueue[int] = DropOldestQueue(2, on_drop=dropped.append)
    for i in range(5):
        q.put(i)
    assert q.dropped == 3 and dropped == [0, 1, 2]
    assert q.get_batch(10, timeout=0) == [3, 4]
    q.close()
    assert q.put(9) is False
