"""StreamSource against real servers: GStreamer's RTSP server (audio, audio+video, G.711, video only, with a
password, killed and restarted), an HTTP WAV stream (live, stalling, finite, with a password), and a TCP port
that never answers. Every wait is on a condition; the timeouts and backoff delays are made small per source."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from support.audio import rms, tone, write_wav
from support.broker import free_port
from support.httpstream import HttpAudioServer
from support.rtsp import RtspServer, SilentServer
from support.streams import ProcessCounter, Reader, ffmpeg_children
from support.wait import wait_for

from monitor.sources.stream import StreamSource

RATE = 48000
FAST = {"first_delay": 0.05, "max_delay": 0.4, "io_timeout": 20.0, "start_timeout": 60.0, "no_data_timeout": 60.0}
PASSWORD = "p@ss:w/rd#1"  # characters that must be percent-encoded in a URL


@pytest.fixture
def sources() -> Iterator[Callable[..., StreamSource]]:
    """Make StreamSources; every one is stopped at teardown, which must leave no ffmpeg behind (not even a zombie)."""
    made: list[StreamSource] = []

    def make(url: str, **kwargs: object) -> StreamSource:
        source = StreamSource(url, **{**FAST, **kwargs})  # type: ignore[arg-type]
        made.append(source)
        return source

    yield make
    for source in made:
        source.stop()
    assert ffmpeg_children() == []


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of a 440 Hz tone at 48 kHz: longer than any test reads from one connection."""
    return write_wav(tmp_path_factory.mktemp("stream") / "tone.wav", tone(60, RATE), RATE)


@pytest.fixture(scope="module")
def rtsp(wav: Path) -> Iterator[RtspServer]:
    with RtspServer(wav) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[HttpAudioServer]:
    # stall_after: more than ffmpeg reads to probe a WAV stream before its first output (about 1 s of audio).
    with HttpAudioServer(tone(5, RATE), RATE, stall_after=3.0) as server:
        yield server


def running_argv(source: StreamSource) -> list[str]:
    """The command line of the source's ffmpeg, once it runs."""
    pid = wait_for(lambda: source.pid, message="ffmpeg never started")
    return psutil.Process(pid).cmdline()


# --- audio arrives, and only audio is asked for ----------------------------------------------------------------


@pytest.mark.parametrize("mount", ["/audio", "/pcmu"])
def test_rtsp_audio_arrives_as_48k_mono_over_tcp(sources, rtsp: RtspServer, mount: str) -> None:
    source = sources(rtsp.url(mount))
    argv = running_argv(source)
    assert argv[argv.index("-rtsp_transport") + 1] == "tcp"
    assert argv[argv.index("-allowed_media_types") + 1] == "audio"
    assert "-timeout" in argv  # the socket timeout that ends a half-open connection
    reader = Reader(source)
    wait_for(lambda: reader.samples >= RATE, message=lambda: f"{source.state}: {source.last_error}")
    assert source.state == "up" and source.rate == RATE and source.media == "audio"
    assert source.samples_received >= reader.samples and source.bytes_received == 2 * source.samples_received
    # The tone made it through the codec (AAC, or mu-law at 8 kHz): its level, not silence or noise.
    assert rms(reader.audio()[RATE // 2 :]) == pytest.approx(rms(tone(1, RATE)), rel=0.25)
    source.stop()
    wait_for(lambda: reader.ended)
    assert source.pid is None and source.read(0.1) is None


def test_rtsp_camera_with_video_gets_only_its_audio_track_set_up(sources, rtsp: RtspServer) -> None:
    before = len(rtsp.setups)
    source = sources(rtsp.url("/av"))
    reader = Reader(source)
    wait_for(lambda: reader.samples >= RATE // 2, message=lambda: f"{source.state}: {source.last_error}")
    assert rtsp.setups[before:] == ["/av/stream=1"]  # the audio track; the video (stream=0) never left the server


def test_full_stream_mode_reads_the_audio_and_leaves_the_video_undecoded(sources, rtsp: RtspServer) -> None:
    before = len(rtsp.setups)
    source = sources(rtsp.url("/av"), audio_only=False)
    argv = running_argv(source)
    assert "-allowed_media_types" not in argv
    assert argv[argv.index("-map") + 1] == "0:a:0" and "-vn" in argv  # no video stream is mapped, so none decoded
    reader = Reader(source)
    wait_for(lambda: reader.samples >= RATE // 2, message=lambda: f"{source.state}: {source.last_error}")
    assert source.media == "full"
    assert sorted(rtsp.setups[before:]) == ["/av/stream=0", "/av/stream=1"]


def test_a_camera_without_audio_falls_back_to_the_full_stream_once_and_says_there_is_no_audio(
    sources, rtsp: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.sources.stream")
    source = sources(rtsp.url("/video"), audio_only_attempts=2)
    wait_for(lambda: source.processes_started >= 5, message=lambda: f"{source.processes_started} started")
    assert source.media == "full"  # remembered: never asks for audio alone again
    assert source.last_error == "the stream has no audio track"
    # What /healthz and MQTT follow: down, with the reason; a new snapshot per new reason, not per retry.
    assert (source.input_state.state, source.input_state.error) == ("down", "the stream has no audio track")
    assert source.input_state.version == 2  # connecting -> down (PLAY failed) -> down (no audio track)
    assert source.state in ("down", "connecting") and source.samples_received == 0
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # One line for going down, one for the fallback, one for the new reason: not one per retry.
    assert len(loud) == 3, loud
    assert "down: rtsp: method PLAY failed: 454" in loud[0] and "full stream" in loud[1] and "no audio" in loud[2]


def test_http_wav_stream(sources, http: HttpAudioServer) -> None:
    source = sources(http.url("/live.wav"))
    argv = running_argv(source)
    assert "-rw_timeout" in argv and "-allowed_media_types" not in argv
    reader = Reader(source)
    wait_for(lambda: reader.samples >= RATE, message=lambda: f"{source.state}: {source.last_error}")
    assert source.state == "up" and source.media == "full"
    assert rms(reader.audio()) == pytest.approx(rms(tone(1, RATE)), rel=0.05)


def test_every_sample_arrives_exactly_and_a_finished_stream_ends_without_reconnect(sources, http) -> None:
    source = sources(http.url("/file.wav"), reconnect=False)
    reader = Reader(source)
    wait_for(lambda: reader.ended, message=lambda: f"{source.state}: {source.last_error}")
    expected = np.round(tone(5, RATE) * 32767) / 32768
    np.testing.assert_allclose(reader.audio(), expected, atol=1.5 / 32768)
    assert source.processes_started == 1 and source.state == "down" and source.last_error == "the stream ended"


@pytest.mark.parametrize("as_url", [False, True])
def test_a_file_plays_once_at_its_own_pace_then_ends(sources, tmp_path: Path, as_url: bool) -> None:
    path = write_wav(tmp_path / "three.wav", tone(3, RATE), RATE)
    source = sources(path.as_uri() if as_url else str(path))
    started = time.monotonic()
    reader = Reader(source)
    assert "-re" in running_argv(source)
    wait_for(lambda: reader.ended, message=lambda: f"{source.state}: {source.last_error}")
    # A lower bound only: a busy machine makes this slower, never faster. Without -re it took ~0.1 s.
    assert time.monotonic() - started >= 2.0
    assert reader.samples == pytest.approx(3 * RATE, abs=RATE // 10)
    assert source.processes_started == 1 and source.reopens == 0 and source.last_error == "the file ended"


def test_the_windowing_stage_cuts_windows_from_a_stream_and_its_stop_ends_ffmpeg(sources, rtsp) -> None:
    from monitor.core.queues import DropOldestQueue
    from monitor.core.windowing import WindowStage
    from monitor.records import Window

    source = sources(rtsp.url("/audio"))
    windows: DropOldestQueue[Window] = DropOldestQueue(8)
    stage = WindowStage(source, windows, window_seconds=1.0, hop_seconds=0.5)
    stage.start()
    first = windows.get(timeout=60)
    assert first is not None and first.samples.size == RATE and first.dbfs > -20  # the tone, at 48 kHz
    stage.stop()  # interrupt() from another thread, then the stage's own source.stop()
    assert stage.join(60) and stage.error is None
    assert source.pid is None and ffmpeg_children() == []


# --- failures: a server that dies, one that never answers, one that stalls ---------------------------------------


def test_rtsp_server_killed_mid_stream_then_back(sources, wav: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sources.stream")
    with RtspServer(wav) as server:
        source = sources(server.url("/audio"), first_delay=0.05, max_delay=0.4, stable_seconds=3600)
        reader = Reader(source)
        counter = ProcessCounter()
        wait_for(lambda: reader.samples >= RATE // 2, message=lambda: f"{source.state}: {source.last_error}")
        assert (source.input_state.state, source.input_state.error) == ("up", None)
        server.kill()
        wait_for(lambda: source.input_state.state == "down")
        assert source.input_state.error  # the reason, e.g. "the stream ended"
        wait_for(lambda: source.failures >= 4, message=lambda: f"{source.failures} failures: {source.last_error}")
        assert source.state in ("down", "connecting") and source.reopens == 0
        assert 0.4 * (1 - 0.2) <= source.retry_delay <= 0.4  # doubled up to the cap, less its jitter
        heard = reader.samples
        server.start()  # same port
        wait_for(lambda: reader.samples >= heard + RATE // 2, message=lambda: f"{source.state}: {source.last_error}")
        assert source.state == "up" and source.reopens == 1 and source.failures >= 4
        wait_for(lambda: source.input_state.state == "up")  # set just after state, on the reader thread
        assert source.input_state.version <= 4  # connecting, up, down, down (new reason), up: not one per retry
        assert counter.stop() == 1  # never two ffmpeg at once, however many restarts
        assert source.processes_started >= 5
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum(": down: " in line for line in lines) == 1
        assert sum("up again after" in line for line in lines) == 1
        assert len(lines) <= 4, lines  # state changes and new reasons, not one line per retry
        source.stop()  # before the server goes away with the block


def test_half_open_rtsp_is_ended_by_ffmpegs_socket_timeout(sources) -> None:
    with SilentServer() as silent:
        source = sources(f"rtsp://127.0.0.1:{silent.port}/cam", io_timeout=0.5, start_timeout=600)
        wait_for(lambda: source.failures >= 1, message=lambda: f"{source.state}: {source.last_error}")
        assert source.state in ("down", "connecting")
        assert "(no answer for 0.5 s)" in str(source.last_error)
        assert source.media == "audio"  # a server that does not answer is no reason to ask for video


def test_half_open_connection_is_ended_by_the_no_data_watchdog(sources) -> None:
    with SilentServer() as silent:
        source = sources(f"rtsp://127.0.0.1:{silent.port}/cam", io_timeout=600, start_timeout=0.5)
        wait_for(lambda: source.failures >= 2, message=lambda: f"{source.state}: {source.last_error}")
        assert source.last_error == "no audio 0.5 s after starting (server not answering?)"
        assert source.media == "audio"


@pytest.mark.parametrize(
    ("timeouts", "error"),
    [
        ({"io_timeout": 600, "no_data_timeout": 0.5}, "no data for 0.5 s (connection stalled?)"),
        ({"io_timeout": 0.5, "no_data_timeout": 600}, "Connection timed out"),
    ],
    ids=["watchdog", "ffmpeg-rw-timeout"],
)
def test_a_stream_that_stalls_after_sending_audio_goes_down(sources, http, timeouts, error) -> None:
    source = sources(http.url("/stall.wav"), **timeouts)
    wait_for(lambda: source.failures >= 1, message=lambda: f"{source.state}: {source.last_error}")
    assert source.samples_received >= RATE // 2  # it was up: audio came before the stall
    assert error in str(source.last_error)


@pytest.mark.parametrize(
    ("timeouts", "error"),
    [
        ({"io_timeout": 600, "no_data_timeout": 0.5}, "no data for 0.5 s (connection stalled?)"),
        ({"io_timeout": 0.5, "no_data_timeout": 600}, "Connection timed out"),
    ],
    ids=["watchdog", "ffmpeg-socket-timeout"],
)
def test_a_camera_that_hangs_mid_stream_goes_down_and_comes_back(sources, wav: Path, timeouts, error) -> None:
    with RtspServer(wav) as server:
        source = sources(server.url("/audio"), stable_seconds=3600, **timeouts)
        wait_for(lambda: source.state == "up", message=lambda: f"{source.state}: {source.last_error}")
        server.freeze()  # the TCP connection stays established; no RTP, no RTSP answer, no FIN
        try:
            wait_for(lambda: source.failures >= 1, message=lambda: f"{source.state}: {source.last_error}")
            assert error in str(source.last_error)
        finally:
            server.thaw()
        wait_for(lambda: source.state == "up" and source.reopens == 1, message=lambda: f"{source.last_error}")
        source.stop()


def test_restarts_never_overlap_even_when_every_attempt_fails_at_once(sources) -> None:
    counter = ProcessCounter()
    source = sources(f"rtsp://127.0.0.1:{free_port()}/cam", first_delay=0.001, max_delay=0.001, jitter=0)
    wait_for(lambda: source.processes_started >= 8)
    assert counter.stop() <= 1
    assert "Connection refused" in str(source.last_error)


# --- credentials and bad input --------------------------------------------------------------------------------


def all_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_rtsp_password_from_the_environment_works_and_is_never_shown(
    sources, wav: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.sources")
    monkeypatch.setenv("CAM_PASSWORD", PASSWORD)
    with RtspServer(wav, user="cam", password=PASSWORD) as server:
        good = sources(server.url("/audio"), username="cam", password_env="CAM_PASSWORD")
        reader = Reader(good)
        wait_for(lambda: reader.samples >= RATE // 2, message=lambda: f"{good.state}: {good.last_error}")
        # A wrong password written in the URL itself: ffmpeg prints the URL in its error, we must not.
        bad = sources(server.url("/audio", user="cam", password="Wr0ngSecret"))
        wait_for(lambda: bad.failures >= 2, message=lambda: f"{bad.state}: {bad.last_error}")
    assert bad.last_error == "Server returned 401 Unauthorized (authorization failed)"
    assert bad.url == bad.name == f"rtsp://***@127.0.0.1:{server.port}/audio"
    shown = all_text(caplog) + str(bad.last_error) + str(good.last_error) + good.url + good.name
    for secret in (PASSWORD, "p%40ss%3Aw%2Frd%231", "Wr0ngSecret"):
        assert secret not in shown
    assert "401 Unauthorized" in all_text(caplog)


def test_http_password_from_a_file(sources, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.sources")
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    with HttpAudioServer(tone(2, RATE), RATE, user="cam", password=PASSWORD) as server:
        source = sources(server.url("/live.wav"), username="cam", password_file=str(secret))
        reader = Reader(source)
        wait_for(lambda: reader.samples >= RATE // 2, message=lambda: f"{source.state}: {source.last_error}")
        wrong = sources(server.url("/live.wav"), username="cam", password="nope-nope")
        wait_for(lambda: wrong.failures >= 1)
    assert wrong.last_error is not None and "401 Unauthorized" in wrong.last_error
    assert PASSWORD not in all_text(caplog) and "nope-nope" not in all_text(caplog) + wrong.last_error


@pytest.mark.parametrize("kind", ["refused", "404"])
def test_a_bad_url_is_one_error_line_naming_the_source(sources, http, kind, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="monitor.sources")
    url = f"rtsp://127.0.0.1:{free_port()}/cam" if kind == "refused" else http.url("/nothing-here")
    source = sources(url, name="porch")
    wait_for(lambda: source.failures >= 3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert line.startswith("stream porch: down: ") and "\n" not in line and "Traceback" not in line
    assert ("Connection refused" if kind == "refused" else "Server returned 404 Not Found") in line


# --- stopping ---------------------------------------------------------------------------------------------------


def stops_promptly(source: StreamSource) -> None:
    """``stop()`` returns (a 1000 s backoff or hung connection would make it hang), leaving no process."""
    done = threading.Event()
    threading.Thread(target=lambda: (source.stop(), done.set()), daemon=True).start()
    wait_for(done.is_set, message="stop() did not return")
    assert source.pid is None and ffmpeg_children() == []


def test_interrupt_wakes_a_read_blocked_on_a_silent_server_and_ends_ffmpeg(sources) -> None:
    with SilentServer() as silent:
        source = sources(f"rtsp://127.0.0.1:{silent.port}/cam", io_timeout=1000, start_timeout=1000)
        reader = Reader(source)  # blocked: the stream never comes up
        wait_for(lambda: source.pid)
        source.interrupt()
        wait_for(lambda: reader.ended, message="read() still blocked")
        stops_promptly(source)


def test_stop_during_a_long_backoff(sources) -> None:
    source = sources(f"rtsp://127.0.0.1:{free_port()}/cam", first_delay=1000, max_delay=1000)
    wait_for(lambda: source.failures >= 1)
    stops_promptly(source)


def test_an_ffmpeg_that_ignores_sigterm_is_killed_and_reaped(sources, http, tmp_path: Path) -> None:
    # A decoder wedged in the kernel or a library ignores SIGTERM; a real process stands in for one.
    stubborn = tmp_path / "ffmpeg"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nexec sleep 1000\n")
    stubborn.chmod(stubborn.stat().st_mode | stat.S_IEXEC)
    source = sources(http.url("/live.wav"), ffmpeg=str(stubborn), kill_grace=0.2)
    pid = wait_for(lambda: source.pid)
    stops_promptly(source)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).ppid() != os.getpid()


def test_a_consumer_that_falls_behind_loses_the_oldest_audio_not_the_stream(sources, http, caplog) -> None:
    source = sources(http.url("/file.wav"), buffer_seconds=0.5, reconnect=False)
    wait_for(lambda: source.last_error == "the stream ended", message=lambda: f"{source.samples_received}")
    assert source.samples_received == 5 * RATE
    block = source.read(0.1)
    assert block is not None and block.size == RATE // 2  # the newest half second
    assert source.dropped_samples == 5 * RATE - RATE // 2 and source.drops >= 1
    np.testing.assert_allclose(block, tone(5, RATE)[-RATE // 2 :], atol=1.5 / 32768)
    said = [r.getMessage() for r in caplog.records if "fell behind" in r.getMessage()]
    assert said == [f"stream {source.name}: fell behind, the oldest audio dropped {source.drops} time(s) so far "
                    "(4.5 s)"]
