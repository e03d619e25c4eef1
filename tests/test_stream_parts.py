"""The parts of StreamSource that need no server: input refused at construction, the backoff, the bounded
buffer, credentials in URLs and their redaction, ffmpeg's stderr condensed. (The behaviour against real servers
is in test_stream_source.py.)"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from monitor.sources.backoff import backoff_delay
from monitor.sources.ffmpeg import FfmpegProcess, StreamError, condense, redact, with_credentials
from monitor.sources.stream import StreamSource
from monitor.sources.streambuffer import SampleBuffer

PASSWORD = "p@ss:w/rd#1"  # characters that must be percent-encoded in a URL


@pytest.mark.parametrize(
    ("url", "kwargs", "says"),
    [
        ("", {}, "empty"),
        ("ftp2://cam:hunter2@host/x", {}, "unsupported scheme 'ftp2'"),
        ("rtsp:///only/a/path", {}, "no host"),
        ("rtsp://cam:hunter2@host:99999/x", {}, "bad port"),
        ("rtsp://host/x", {"password_env": "SURELY_NOT_SET_4711"}, "SURELY_NOT_SET_4711 is not set"),
        ("rtsp://host/x", {"password_file": "/nonexistent/pw"}, "cannot read the stream password file"),
        ("rtsp://host/x", {"ffmpeg": "/nonexistent/ffmpeg"}, "apt-get install ffmpeg"),
    ],
)
def test_input_that_cannot_work_is_refused_with_one_line(url: str, kwargs: dict, says: str) -> None:
    with pytest.raises(StreamError) as info:
        StreamSource(url, **kwargs)
    message = str(info.value)
    assert says in message and "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize("bad", [{"first_delay": 0}, {"first_delay": 5, "max_delay": 1}, {"io_timeout": 0}])
def test_a_zero_delay_or_timeout_is_refused_it_would_be_a_restart_storm(bad: dict) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        StreamSource("rtsp://host/x", **bad)


def test_backoff_doubles_up_to_the_cap_less_its_jitter() -> None:
    assert [backoff_delay(n, 1, 120, 0.2, 0.0) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 120, 120]
    assert backoff_delay(3, 1, 120, 0.2, 0.999) == pytest.approx(4 * 0.8, rel=1e-3)
    assert backoff_delay(10_000, 1, 120, 0.2, 0.5) == pytest.approx(108)


def test_sample_buffer_drops_oldest_first_and_hands_out_the_rest() -> None:
    buf = SampleBuffer(5)
    for start in (0, 3, 6):
        buf.put(np.arange(start, start + 3, dtype=np.float32))
    assert buf.drops == 2 and buf.dropped_samples == 4 and len(buf) == 5
    np.testing.assert_array_equal(buf.take(0), [4, 5, 6, 7, 8])
    assert buf.take(0).size == 0  # nothing yet
    buf.put(np.arange(3, dtype=np.float32))
    buf.finish()  # ended: what is held, then None
    np.testing.assert_array_equal(buf.take(0), [0, 1, 2])
    assert buf.take(0) is None
    big = SampleBuffer(5)
    big.put(np.arange(7, dtype=np.float32))  # one block larger than the buffer: its newest part
    assert (big.drops, big.dropped_samples) == (1, 2)
    np.testing.assert_array_equal(big.take(0), [2, 3, 4, 5, 6])
    closed = SampleBuffer(5)
    closed.put(np.ones(2, np.float32))
    closed.close()  # interrupted: None at once
    assert closed.take(None) is None


def test_credentials_are_encoded_into_the_url_and_redacted_everywhere() -> None:
    url = with_credentials("rtsp://old:creds@cam.local:554/ch1?x=1", "admin", PASSWORD)
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd%231@cam.local:554/ch1?x=1"
    assert redact(f"[rtsp @ 0x1] {url}: 401; also {PASSWORD}", (PASSWORD,)) == (
        "[rtsp @ 0x1] rtsp://***@cam.local:554/ch1?x=1: 401; also ***"
    )
    # A user name alone keeps the password written in the URL (dropping it was a silent 401).
    assert with_credentials("rtsp://admin:pw%40x@cam/x", "viewer", None) == "rtsp://viewer:pw%40x@cam/x"
    # Cameras that take the password in the query string (Reolink, Foscam) are redacted too.
    assert redact("http://cam/cgi?cmd=Snap&user=admin&password=Top%20S&pwd=x;token=t") == (
        "http://cam/cgi?cmd=Snap&user=admin&password=***&pwd=***;token=***")
    stderr = [
        "[wav @ 0x55f296370980] Packet corrupt (stream = 0, dts = NOPTS).",
        "Guessed Channel Layout for Input Stream #0.0 : mono",
        "[rtsp @ 0x5646b76dba00] method PLAY failed: 454 Session Not Found",
        "rtsp://***@h/x: Server returned 4XX Client Error, but not one of 40{0,1,3,4}",
    ]
    assert condense(stderr) == "rtsp: method PLAY failed: 454 Session Not Found"
    assert condense(["Stream map '0:a:0' matches no streams.", "To ignore this, add a trailing '?' to the map."]) == (
        "the stream has no audio track"
    )


def test_ffmpegs_stderr_is_redacted_before_it_is_shortened_and_an_overlong_line_is_dropped_whole() -> None:
    secret = "S3CRET-HALF-ONE:S3CRET-HALF-TWO"
    near_cut = "x" * 285 + f"rtsp://admin:{secret}@cam/x"  # the 300-character cut falls inside the password
    overlong = "y" * 8180 + secret + "z" * 5000  # past the line bound, with the password across it
    script = (
        "import os, sys\n"
        f"os.write(2, {near_cut!r}.encode() + b'\\n')\n"
        f"data = {overlong!r}.encode() + b'\\n'\n"
        "for i in range(0, len(data), 1000):\n"
        "    os.write(2, data[i:i + 1000])\n"
        "os.write(2, b'[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized\\n')\n"
    )
    proc = FfmpegProcess([sys.executable, "-c", script], (secret,))
    while proc.read(5.0) is not None:
        pass
    proc.close(5.0)
    lines = list(proc.stderr_tail)
    assert all("S3CRET" not in line for line in lines), lines
    assert lines[0] == ("x" * 285 + "rtsp://***@cam/x")[:300] and len(lines) == 2  # the overlong line is gone, not cut
    assert proc.error() == "rtsp: method DESCRIBE failed: 401 Unauthorized"
