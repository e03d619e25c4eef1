"""Benchmark section i (``bench.py --only sources``): several sources, one model.

  i1  cost per source-window when N windows (one per source) are scored as one batch vs one call each, N = 1, 2,
      4, 8: how far batching stretches one box
  i2  the real pipeline (windowing threads, fair queue, worker, detectors) live-paced at hop 1 s with N sources,
      batched (``max_batch`` 8) vs one at a time (``max_batch`` 1): windows scored and dropped per source, CPU per
      second of wall time; a source count "stays real time" when, after the warm-up, no source drops a window and
      the model scores as many windows as the sources cut
  i3  CPU of the readers themselves: N StreamSources (an ffmpeg each, and their reader threads in this process)
      on live HTTP WAV (16 kHz PCM) and RTSP AAC streams, CPU-seconds per second of audio: ffmpeg's, and this
      process's (the reader threads and the consumers taking the audio)

Run through ``bench.py``; results go into ``bench.json`` under ``sources``.
"""

from __future__ import annotations

import http.server
import os
import resource
import shutil
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SOURCE_COUNTS = (1, 2, 4, 8)
WARMUP_S = 10.0  # of live-paced audio before drops count (the model's first calls are slower)


def measure_sources(model: str, threads: int, repeat: int, seconds: float = 40.0) -> dict[str, Any]:
    """All of section i."""
    return {"sources": {"scorer": _scorer(model, threads, repeat), "pipeline": _pipeline(model, threads, seconds),
                        "readers": _readers(seconds=min(seconds, 30.0))}}


def _scorer(model: str, threads: int, repeat: int) -> dict[str, Any]:
    from bench import LABELS_10, labelled, median_ms, test_audio

    from monitor.inference.scorer import ClapScorer

    scorer = ClapScorer(model, threads=threads)
    scorer.set_labels(labelled(LABELS_10))
    scorer.free_text_tower()
    x = test_audio(max(SOURCE_COUNTS))
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    for n in SOURCE_COUNTS:
        reps = max(3, repeat // n)
        batched = median_ms(lambda n=n: scorer.score(x[:n]), reps)
        single = median_ms(lambda n=n: [scorer.score(x[i : i + 1]) for i in range(n)], reps)
        out[str(n)] = {"batched_ms_per_window": batched / n, "one_at_a_time_ms_per_window": single / n,
                       "batched_ms_per_hop": batched, "one_at_a_time_ms_per_hop": single}
    out["load_after"] = os.getloadavg()[0]
    return out


def _pipeline(model: str, threads: int, seconds: float) -> dict[str, Any]:
    from bench import test_audio
    from support.config import make_config

    from monitor.inference.scorer import ClapScorer
    from monitor.labels import LabelSet
    from monitor.pipeline import SourcePlan
    from monitor.wiring import build_monitor

    audio = np.concatenate(list(test_audio(12)))  # 60 s of room-like sound, looped
    out: dict[str, Any] = {}
    scorer = ClapScorer(model, threads=threads)
    labels = ["glass breaking", "dog barking", "a smoke alarm beeping"]
    for n in SOURCE_COUNTS:
        for mode, max_batch in (("batched", 8), ("one_at_a_time", 1)):
            cfg = make_config(model, labels=labels, audio={"window_seconds": 5.0, "hop_seconds": 1.0},
                              inference={"threads": threads, "max_batch": max_batch, "queue_size": 4},
                              sources=[{"name": f"s{i}", "url": f"rtsp://bench/{i}"} for i in range(n)])
            from monitor.labels import labels_from_config

            snapshot: LabelSet = labels_from_config(cfg)
            scorer.set_labels(snapshot.scored())
            feeds = [_PacedSource(audio, offset=i * 48000 * 7) for i in range(n)]
            plans = [SourcePlan(src, lambda f=f: f) for src, f in zip(cfg.sources or [], feeds, strict=True)]
            mon = build_monitor(cfg, plans, live=True, scorer=scorer, stdout=False)
            stop = threading.Event()
            runner = threading.Thread(target=mon.run, args=(stop,), daemon=True)
            load0 = os.getloadavg()[0]
            cpu0 = _cpu()
            t0 = time.monotonic()
            runner.start()
            for f in feeds:
                f.start(t0)
            time.sleep(WARMUP_S)
            warm = mon.stats()
            cpu_w, t_w = _cpu(), time.monotonic()
            time.sleep(seconds - WARMUP_S)
            end = mon.stats()
            cpu1, t1 = _cpu(), time.monotonic()
            stop.set()
            runner.join(30)
            for f in feeds:
                f.stop()
            per = {s.name: {"windows": s.windows, "dropped": s.dropped} for s in end.sources}
            dropped_after_warmup = {s.name: s.dropped - w.dropped for s, w in zip(end.sources, warm.sources,
                                                                                   strict=True)}
            cut = sum(s.windows for s in end.sources) - sum(s.windows for s in warm.sources)
            scored = end.windows_scored - warm.windows_scored
            # Keeping up: no drops, and scored as many as were cut, give or take what is in flight at either end of the
            # interval (one hop's windows and a batch); a slight overload would otherwise only show once the queue is
            # full, maybe after the run.
            out[f"{n}/{mode}"] = {
                "sources": n, "max_batch": max_batch, "wall_s": t1 - t0,
                "scored": end.windows_scored, "dropped": end.windows_dropped, "per_source": per,
                "dropped_after_warmup": dropped_after_warmup,
                "cut_after_warmup": cut, "scored_after_warmup": scored,
                "real_time": keeps_up(dropped_after_warmup, cut, scored, n, max_batch),
                "cpu_s_per_s": (cpu1 - cpu_w) / (t1 - t_w), "cpu_s_total": cpu1 - cpu0,
                # the box's 1-minute load before and after: other work on a shared box skews everything here
                "load_before": load0, "load_after": os.getloadavg()[0],
            }
            print(f"# sources {n} {mode}: {out[f'{n}/{mode}']}", flush=True)
    return out


def keeps_up(dropped_after_warmup: dict[str, int], cut: int, scored: int, n: int, max_batch: int) -> bool:
    """Whether a run kept up: no drops after the warm-up, and as many windows scored as cut, within what may be in
    flight at either end (one hop's windows of every source, and a batch)."""
    return all(d == 0 for d in dropped_after_warmup.values()) and scored >= cut - (n + max_batch)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _PacedSource:
    """A live source for the benchmark: ``audio`` looped, 0.25 s blocks delivered on the wall clock."""

    lossless = False
    rate = 48_000
    state = "up"
    last_error = None
    reopens = 0

    def __init__(self, audio: np.ndarray, offset: int = 0, block: float = 0.25) -> None:
        self.audio = np.roll(audio, -offset)
        self.block = round(block * self.rate)
        self._pos = 0
        self._t0 = 0.0
        self._stop = threading.Event()

    def start(self, t0: float) -> None:
        self._t0 = t0

    def read(self, timeout: float = 0.5) -> np.ndarray | None:
        if self._stop.is_set():
            return None
        due = self._t0 + (self._pos + self.block) / self.rate
        if self._stop.wait(max(0.0, due - time.monotonic())):
            return None
        i = self._pos % len(self.audio)
        out = np.take(self.audio, range(i, i + self.block), mode="wrap")
        self._pos += self.block
        return out.astype(np.float32)

    def interrupt(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()


def _readers(seconds: float) -> dict[str, Any]:
    """i3: CPU of N StreamSources (one ffmpeg each, plus the reader thread in this process), reading live HTTP WAV
    (16 kHz PCM) and RTSP AAC streams (GStreamer's server), with a thread taking the audio as the windowing stage
    would."""
    if shutil.which("ffmpeg") is None:
        return {"error": "ffmpeg not installed"}
    import tempfile

    from support.audio import tone, write_wav
    from support.rtsp import RtspServer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LiveWav)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wav = write_wav(Path(tempfile.mkdtemp()) / "tone.wav", tone(seconds + 120, 16000, 600, 0.3), 16000)
    out: dict[str, Any] = {}
    try:
        with RtspServer(wav) as rtsp:
            urls = {"http-wav": f"http://127.0.0.1:{server.server_address[1]}/live.wav",
                    "rtsp-aac": rtsp.url("/audio")}
            for kind, url in urls.items():
                for n in SOURCE_COUNTS:
                    out[f"{kind}/{n}"] = _read_streams(url, n, seconds)
                    print(f"# readers {kind} {n}: {out[f'{kind}/{n}']}", flush=True)
    finally:
        server.shutdown()
    return out


def _read_streams(url: str, n: int, seconds: float) -> dict[str, Any]:
    import psutil

    from monitor.sources.stream import StreamSource

    sources = [StreamSource(url, f"bench{i}") for i in range(n)]
    got = [0] * n
    threads = [threading.Thread(target=_take, args=(src, got, i), daemon=True) for i, src in enumerate(sources)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while not all(src.state == "up" for src in sources) and time.monotonic() < deadline:
            time.sleep(0.1)
        procs = [psutil.Process(src.pid) for src in sources if src.pid is not None]
        ff0 = [sum(p.cpu_times()[:2]) for p in procs]
        self0, got0, t0 = _cpu(), list(got), time.monotonic()
        time.sleep(seconds)
        ff1 = [sum(p.cpu_times()[:2]) for p in procs]
        self1, t1 = _cpu(), time.monotonic()
        audio_s = (sum(got) - sum(got0)) / 48000
    finally:
        for src in sources:
            src.stop()
    return {"streams": n, "up": len(procs), "audio_s": audio_s, "wall_s": t1 - t0,
            "ffmpeg_cpu_s_per_audio_s": (sum(ff1) - sum(ff0)) / max(audio_s, 1e-9),
            "in_process_cpu_s_per_audio_s": (self1 - self0) / max(audio_s, 1e-9),
            "reopens": sum(src.reopens for src in sources), "load": os.getloadavg()[0]}


def _take(source: Any, got: list[int], i: int) -> None:
    """Take a source's audio as the windowing thread would, counting samples."""
    while (block := source.read(0.5)) is not None:
        got[i] += block.size


class _LiveWav(http.server.BaseHTTPRequestHandler):
    """An endless 16 kHz mono 16-bit WAV, sent in real time (a camera's HTTP audio)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.end_headers()
        rate = 16000
        header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF - 8) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF - 44)
        rng = np.random.default_rng(0)
        block = (rng.standard_normal(rate // 10) * 3000).astype("<i2").tobytes()  # 0.1 s
        t0 = time.monotonic()
        sent = 0
        try:
            self.wfile.write(header)
            while True:
                self.wfile.write(block)
                sent += 1
                time.sleep(max(0.0, t0 + sent * 0.1 - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return


def report_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the results table for section i."""
    s = res.get("sources")
    if not s:
        return []
    rows = []
    sc = {k: v for k, v in s.get("scorer", {}).items() if isinstance(v, dict)}
    if sc:
        rows.append(("i1. ms per source-window, batched / one at a time, at " + " / ".join(sc) + " sources",
                     "; ".join(f"{v['batched_ms_per_window']:.0f} / {v['one_at_a_time_ms_per_window']:.0f}"
                               for v in sc.values())))
    pipe = s.get("pipeline", {})
    for mode in ("batched", "one_at_a_time"):
        runs = {k.split("/")[0]: v for k, v in pipe.items() if k.endswith(mode)}
        if runs:
            rt = [n for n, v in runs.items() if v["real_time"]]
            rows.append((f"i2. pipeline at hop 1 s, {mode.replace('_', ' ')}: real time at N sources "
                         f"(drops after warm-up; CPU-s per s)",
                         ", ".join(f"{n}: {'yes' if v['real_time'] else 'no'} "
                                   f"({sum(v['dropped_after_warmup'].values())}; {v['cpu_s_per_s']:.2f})"
                                   for n, v in runs.items()) + f" → max {max(map(int, rt), default=0)}"))
    rd = s.get("readers", {})
    if rd and "error" not in rd:
        for kind in dict.fromkeys(k.split("/")[0] for k in rd):
            runs = {k.split("/")[1]: v for k, v in rd.items() if k.startswith(kind + "/")}
            rows.append((f"i3. readers, {kind}: CPU-s per audio-s, ffmpeg + in-process, at " + " / ".join(runs)
                         + " streams", " / ".join(f"{v['ffmpeg_cpu_s_per_audio_s']:.4f} + "
                                                  f"{v['in_process_cpu_s_per_audio_s']:.4f}" for v in runs.values())))
    return rows
