"""Reopening a live input: a PulseAudio null sink unloaded and loaded again stands in for a USB microphone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support.audio import tone, write_wav
from support.wait import wait_for

from monitor.core.queues import DropOldestQueue
from monitor.core.windowing import WindowStage
from monitor.records import Window
from monitor.sources.capture import Capture, rescan_devices
from monitor.sources.reopening import ReopeningSource


def opener(pulse, rates: list[int], **kwargs) -> Callable[[], Capture]:
    """A capture factory for the virtual microphone: opens at ``rates[0]``, and at ``rates[1]`` once one opened."""
    opened: list[Capture] = []

    def open_capture() -> Capture:
        cap = Capture(device=pulse.device_name, samplerate=rates[min(len(opened), len(rates) - 1)], **kwargs)
        cap.start()
        opened.append(cap)
        return cap

    return open_capture


class Reader:
    """Reads a source on its own thread until it returns None, as the windowing stage does; counts samples."""

    def __init__(self, source: ReopeningSource) -> None:
        self.source = source
        self.samples = 0
        self.ended = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (block := self.source.read(0.5)) is not None:
            self.samples += block.size
        self.ended = True

    def wait_for_more(self, message: str) -> None:
        n = self.samples
        wait_for(lambda: self.samples > n, timeout=30, message=message)


def test_reopening_source_survives_an_unplugged_microphone(pulse) -> None:
    src = ReopeningSource(opener(pulse, [48000], ring_seconds=0.5))
    reader = None
    try:
        # An overrun before the unplug: let the device write well over a ring-full without reading it.
        cap = src.capture
        assert cap is not None
        wait_for(lambda: cap.ring.written > cap.ring.capacity + 4800, timeout=30, message="no audio from the sink")
        src.read(0)
        overruns, lost = src.overruns, src.lost_samples
        assert overruns == 1 and lost > 0
        reader = Reader(src)
        reader.wait_for_more("no audio read")
        pulse.unplug()
        try:
            wait_for(lambda: src.state == "down" and src.capture is None, timeout=30, message="unplug not noticed")
            assert "pulse" in (src.last_error or "")
            assert (src.overruns, src.lost_samples) == (overruns, lost)  # the closed capture's counts are kept
            assert src.reopens == 0
        finally:
            pulse.replug()
        wait_for(lambda: src.state == "up", timeout=60, message=lambda: f"not reopened: {src.last_error}")
        assert src.reopens == 1
        reader.wait_for_more("no audio after the microphone came back")
        assert src.overruns >= overruns and src.lost_samples >= lost  # not reset by the new capture
    finally:
        src.interrupt()
        if reader is not None:
            reader.thread.join(30)
        src.stop()


def test_interrupt_ends_a_read_waiting_in_the_backoff(pulse, caplog: pytest.LogCaptureFixture) -> None:
    # The first retry is 10 minutes away: only interrupt() can end the read before the test times out.
    src = ReopeningSource(opener(pulse, [48000]), first_delay=600)
    reader = Reader(src)
    try:
        reader.wait_for_more("no audio read")
        pulse.unplug()
        try:
            wait_for(lambda: "retrying in 600 s" in caplog.text, timeout=30, message="no failed reopen logged")
            src.interrupt()
            reader.thread.join(60)
            assert reader.ended, "interrupt() did not end the read blocked in the backoff"
            assert src.state == "down" and src.reopens == 0
        finally:
            pulse.replug()
    finally:
        src.interrupt()
        reader.thread.join(30)
        src.stop()


def test_window_stage_follows_a_reopened_microphone_to_another_rate(pulse, tmp_path: Path) -> None:
    """48 kHz, unplugged, back at 16 kHz: windows resume at the right pitch; stop() is prompt while it is gone."""
    src = ReopeningSource(opener(pulse, [48000, 16000]))
    queue: DropOldestQueue[Window] = DropOldestQueue(1000)
    stage = WindowStage(src, queue, window_seconds=0.5, hop_seconds=0.5, live=True)
    got: list[Window] = []

    def windows() -> int:
        while (w := queue.get(timeout=0)) is not None:
            got.append(w)
        return len(got)

    stage.start()
    try:
        wait_for(lambda: windows() >= 1, timeout=30, message="no window at 48 kHz")
        pulse.unplug()
        try:
            wait_for(lambda: src.state == "down", timeout=30, message="unplug not noticed")
        finally:
            pulse.replug()
        wait_for(lambda: src.state == "up" and src.rate == 16000, timeout=60, message="not reopened at 16 kHz")
        pulse.play(write_wav(tmp_path / "tone.wav", tone(3, 48000, 1000, 0.5), 48000))
        loud = wait_for(lambda: windows() and [w for w in got if w.dbfs > -12], timeout=30, message="no loud window")
        seg = loud[0].samples
        assert len(seg) == 24000
        peak_hz = np.argmax(np.abs(np.fft.rfft(seg * np.hanning(len(seg))))) * 48000 / len(seg)
        assert abs(peak_hz - 1000) < 10, peak_hz  # 3000 Hz if 16 kHz audio were taken for 48 kHz
        pulse.unplug()
        try:
            wait_for(lambda: src.state == "down", timeout=30, message="second unplug not noticed")
            stage.stop()
            assert stage.join(60), "the stage did not stop while the source waited for the device"
        finally:
            pulse.replug()
        assert stage.error is None
    finally:
        stage.stop()
        stage.join(30)


def test_a_rescan_never_closes_another_sources_microphone(pulse) -> None:
    # Two local sources: one reopening (its device gone) must not rescan PortAudio under the other, whose stream
    # Pa_Terminate would close; that other one's own reopen would then rescan under the first, and so on.
    first = opener(pulse, [48000])()
    second = opener(pulse, [48000])()
    try:
        assert rescan_devices() is False
        for cap in (first, second):
            written = cap.ring.written
            wait_for(lambda cap=cap, written=written: cap.ring.written > written + 4800, timeout=30,
                     message="a rescan closed an open microphone")
        first.stop()
        assert rescan_devices() is False  # the second is still open
    finally:
        first.stop()
        second.stop()
    assert rescan_devices() is True  # nothing open: devices plugged in since are listed from now on
    third = opener(pulse, [48000])()  # and opening works after it
    try:
        written = third.ring.written
        wait_for(lambda: third.ring.written > written + 4800, timeout=30, message="no audio after a rescan")
    finally:
        third.stop()
