"""Faults and abuse the health check must survive: a hostile or broken HTTP client on the metrics port, and a
microphone that goes away while the monitor runs.

Every loop here runs against 127.0.0.1 and is bounded in count and time; nothing sleeps: each test waits on the
condition it expects (an answer, a closed socket, a retained message, a log line).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import socket
import struct
import threading
from pathlib import Path

import pytest
from support.audio import silence, write_wav
from support.broker import Broker, free_port
from support.config import NODE_ID, PREFIX, make_config, write_config
from support.mqtt import MqttCollector, late_view, retained
from support.procs import MonitorProcess
from support.wait import wait_for

from monitor.labels import LabelRegistry
from monitor.mqtt.sink import MqttSink
from monitor.records import InputState
from monitor.runstats import PipelineStats
from monitor.sinks.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +[\w.]+: ")  # one of the monitor's log lines
OTHER_PART = re.compile(r"^\S+ \S+ \w+\s+(?!monitor\.sources)(monitor|sound-monitor)[\w.]*: ")


def http(port: int, request: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout: float = 60.0
         ) -> tuple[int, bytes]:
    """Send ``request`` to 127.0.0.1:``port`` and read the whole answer: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def closed_by_server(sock: socket.socket) -> bool:
    """Block (up to the socket's timeout) until the server closes ``sock``; True if it did."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


@pytest.fixture
def serve(tmp_path: Path):
    """``serve(**metrics_kwargs) -> Metrics`` serving a healthy monitor's /metrics and /healthz on a free port."""
    made: list[Metrics] = []

    def make(**kwargs) -> Metrics:
        registry = LabelRegistry.from_config(make_config(tmp_path / "no-model"))
        m = Metrics(PipelineStats, lambda: (True, "ok"), registry, "m", "n", bind="127.0.0.1", port=free_port(),
                    **kwargs)
        m.start()
        assert m.server is not None
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def test_metrics_are_local_by_default_and_the_unit_allows_enough_files(tmp_path: Path) -> None:
    assert make_config(tmp_path).metrics.bind == "127.0.0.1"
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "systemd" / "sound-monitor.service")
    assert int(unit["Service"]["LimitNOFILE"]) >= 2 * make_config(tmp_path).metrics.max_connections


def test_stalled_connections_neither_exhaust_descriptors_nor_silence_healthz(tiny_model: Path, tmp_path: Path
                                                                            ) -> None:
    """300 clients connect and send nothing (with a timeout far away): the process keeps a bounded number of
    descriptors and /healthz still gives its real answer."""
    port = free_port()
    wav = write_wav(tmp_path / "quiet.wav", silence(600, 16000), 16000)
    cfg = write_config(tmp_path / "c.yaml", tiny_model,
                       metrics={"port": port, "timeout_seconds": 300, "max_connections": 32})
    with MonitorProcess(["replay", str(wav), "--config", str(cfg), "--realtime"]) as mon:
        wait_for(lambda: _try_http(port) == (200, b"ok\n"), timeout=120, message=lambda: mon.stderr()[-2000:])
        fds = Path(f"/proc/{mon.proc.pid}/fd")
        before = len(os.listdir(fds))
        stalled = []
        try:
            for _ in range(300):
                stalled.append(socket.create_connection(("127.0.0.1", port), timeout=60))
            # Accepted in order: once this is answered, the server has seen all 300.
            assert http(port) == (200, b"ok\n")
            assert len(os.listdir(fds)) <= before + 32 + 8
            assert http(port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] == 200
        finally:
            for s in stalled:
                s.close()
        assert "Traceback" not in mon.stderr()


def _try_http(port: int) -> tuple[int, bytes] | None:
    try:
        return http(port, timeout=5)
    except OSError:
        return None


def test_a_burst_of_concurrent_gets_is_all_answered(serve) -> None:
    server = serve().server
    # The kernel queues a burst for us: the listen backlog must hold it (capped by net.core.somaxconn).
    info = server.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    backlog = struct.unpack_from("I", info, 28)[0]  # tcpi_sacked: a listener's maximum accept queue
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog >= min(256, somaxconn)
    start = threading.Barrier(200)
    answers: list[int | str] = []

    def get() -> None:
        start.wait(60)
        try:
            answers.append(http(server.server_address[1], b"GET /metrics HTTP/1.1\r\n\r\n")[0])
        except OSError as exc:
            answers.append(repr(exc))

    threads = [threading.Thread(target=get, daemon=True) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == [200] * 200


def test_a_client_too_slow_to_ask_is_disconnected(serve) -> None:
    metrics = serve(timeout=0.5)
    port = metrics.server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as silent, \
            socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        assert closed_by_server(silent), "a client that sent nothing kept its connection"
        assert closed_by_server(slow), "a client that never finished its request kept its connection"
    wait_for(lambda: metrics.server.connections == 0, timeout=30, message="connections left open")
    assert http(port) == (200, b"ok\n")


@pytest.mark.parametrize("request_bytes, status, words", [
    (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, b"request head over"),
    (b"GET /metrics HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 2000, 431, b"request head over"),
    (b"HELLO\r\n\r\n", 400, b"bad request"),
    (b"\x00\xff\xfe garbage \x01\r\n\r\n", 400, b"bad request"),
    (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, b"not allowed"),
    (b"GET /nothing-here HTTP/1.1\r\n\r\n", 404, b"not found"),
])
def test_bad_requests_get_a_one_line_answer(serve, request_bytes: bytes, status: int, words: bytes) -> None:
    port = serve().server.server_address[1]
    code, body = http(port, request_bytes)
    assert code == status and words in body
    assert body.count(b"\n") == 1 and b"Traceback" not in body
    assert http(port) == (200, b"ok\n")


def _input_is(mq: MqttCollector, state: str, since: int = 0) -> dict:
    """Wait for ``<prefix>/input`` to say ``state``; its payload."""
    return mq.wait_for(f"{PREFIX}/input", lambda m: m.json()["state"] == state, timeout=60, since=since).json()


def test_a_lost_microphone_shows_on_mqtt_and_fails_healthz_until_it_is_back(tiny_model: Path, tmp_path: Path,
                                                                             pulse, broker: Broker) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, metrics={"port": port})
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            MonitorProcess(["run", "--config", str(cfg), "--device", pulse.device_name]) as mon:
        wait_for(lambda: _try_http(port) == (200, b"ok\n"), timeout=120, message=lambda: mon.stderr()[-2000:])
        up = _input_is(mq, "up")
        assert up["error"] is None and up["since"].endswith("Z")
        sensor = mq.wait_for(f"homeassistant/binary_sensor/{NODE_ID}/audio-input/config", timeout=30).json()
        assert sensor["device_class"] == "problem" and sensor["state_topic"] == f"{PREFIX}/input"
        assert (sensor["payload_on"], sensor["payload_off"]) == ("down", "up") and "value_json.state" in \
            sensor["value_template"]
        mark = len(mq.messages())
        pulse.unplug()
        try:
            down = _input_is(mq, "down", since=mark)
            assert "pulse" in down["error"] and "\n" not in down["error"]
            wait_for(lambda: (r := _try_http(port)) and r[0] == 503 and r[1].startswith(b"audio input is down: "),
                     timeout=60, message=lambda: f"/healthz while the microphone is gone: {_try_http(port)}")
            with late_view(broker, f"{PREFIX}/#") as late:
                assert b'"state":"down"' in retained(late, f"{PREFIX}/input")[f"{PREFIX}/input"]
            mark = len(mq.messages())
        finally:
            pulse.replug()
        back = _input_is(mq, "up", since=mark)
        assert back["error"] is None and back["since"] > down["since"]
        wait_for(lambda: _try_http(port) == (200, b"ok\n"), timeout=60, message="/healthz did not recover")
        with late_view(broker, f"{PREFIX}/#") as late:
            assert b'"state":"up"' in retained(late, f"{PREFIX}/input")[f"{PREFIX}/input"]
        mon.proc.terminate()
        assert mon.wait(timeout=60) == 0, mon.stderr()[-3000:]


def test_each_retry_to_reopen_the_microphone_logs_one_short_line(tiny_model: Path, tmp_path: Path, pulse) -> None:
    cfg = write_config(tmp_path / "c.yaml", tiny_model)
    with MonitorProcess(["run", "--config", str(cfg), "--device", pulse.device_name]) as mon:
        wait_for(lambda: "listening for" in mon.stderr(), timeout=120, message=lambda: mon.stderr()[-2000:])
        before = len(mon.log)
        pulse.unplug()
        try:
            # Generous: on a loaded box each PortAudio open (through the starved PulseAudio daemon) can take long.
            wait_for(lambda: mon.stderr().count("retrying in") >= 3, timeout=180, message=lambda: "\n".join(
                ln for ln in mon.stderr().splitlines() if "Expression" not in ln)[-3000:])
        finally:
            pulse.replug()
        wait_for(lambda: "audio input is back" in mon.stderr(), timeout=180, message=lambda: mon.stderr()[-3000:])
        mon.proc.terminate()
        assert mon.wait(timeout=60) == 0
    lines = mon.log[before:]
    lost = next(i for i, ln in enumerate(lines) if "reopening the input device" in ln)
    back = next(i for i, ln in enumerate(lines) if "audio input is back" in ln)
    # Lines of other parts (e.g. "inference is behind" on a loaded machine) are not the input's to answer for.
    cycle = [ln for ln in lines[lost:back + 1] if not OTHER_PART.match(ln)]
    retries = [ln for ln in cycle if "retrying in" in ln]
    # The loss, one line per failed attempt, the capture reopened, back: nothing else, no C library output.
    assert len(cycle) <= len(retries) + 3, "\n".join(cycle)
    assert all(LOG_LINE.match(ln) and len(ln) < 500 for ln in cycle), "\n".join(cycle)
    # Before the loss is noticed PortAudio's audio thread may print its few lines, once per loss.
    assert sum(1 for ln in lines[:lost] if not LOG_LINE.match(ln)) <= 5, "\n".join(lines[:lost])


def test_the_input_state_is_published_again_after_the_broker_forgets_it(tmp_path: Path, broker: Broker) -> None:
    cfg = make_config(tmp_path, broker)
    sink = MqttSink(cfg, LabelRegistry.from_config(cfg), input_entity=True)
    sink.start()

    def retained_input() -> bytes | None:
        with late_view(broker, f"{PREFIX}/input") as late:
            return retained(late, f"{PREFIX}/input").get(f"{PREFIX}/input")

    try:
        sink.on_input(InputState("down", "audio: input stream from 'usb' stopped"))
        assert json.loads(wait_for(retained_input, timeout=30))["state"] == "down"
        broker.restart()  # without persistence: the retained message is gone until the monitor reconnects
        again = json.loads(wait_for(retained_input, timeout=60, message="not republished after reconnecting"))
        assert again == {"state": "down", "error": "audio: input stream from 'usb' stopped",
                         "since": again["since"]}
    finally:
        sink.stop()
