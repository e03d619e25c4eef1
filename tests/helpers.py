"""Test helpers: polling, synthetic audio, a real MQTT subscriber and real broker/PulseAudio handles.

Plain module (not a conftest): tests import it with ``import helpers`` or ``from helpers import ...``; pytest puts
``tests/`` on ``sys.path`` because ``tests/`` has no ``__init__.py``. The fixtures that build these objects live in
``conftest.py``.

Waiting is always done by polling a condition with :func:`wait_for`, never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import paho.mqtt.client as mqtt
import soundfile as sf

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

__all__ = [
    "Broker",
    "Message",
    "MqttCollector",
    "PulseAudio",
    "chirp",
    "concat",
    "dbfs",
    "find_mosquitto",
    "free_port",
    "mixture",
    "noise",
    "port_open",
    "reinitialize_portaudio",
    "rms",
    "silence",
    "tone",
    "wait_for",
    "write_wav",
]


# --------------------------------------------------------------------------------------------------- waiting


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Args:
        predicate: Called repeatedly; exceptions propagate.
        timeout: Seconds before giving up.
        interval: Seconds between calls.
        message: Text of the AssertionError on timeout, or a callable producing it (evaluated only then, so it
            can describe the state at the time of failure).

    Raises:
        AssertionError: If ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g} s: {text}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------------- audio


def _shape(mono: np.ndarray, channels: int) -> np.ndarray:
    """float32 ``(n,)`` for one channel, else ``(n, channels)`` with the same signal in every channel."""
    mono = mono.astype(np.float32)
    if channels == 1:
        return mono
    return np.repeat(mono[:, None], channels, axis=1)


def _frames(seconds: float, rate: int) -> int:
    return round(seconds * rate)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.3, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz and peak ``amplitude``, float32, shaped ``(n,)`` or ``(n, channels)``."""
    t = np.arange(_frames(seconds, rate)) / rate
    return _shape(amplitude * np.sin(2 * np.pi * freq * t), channels)


def noise(seconds: float, rate: int, amplitude: float = 0.1, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Gaussian white noise with standard deviation ``amplitude`` (clipped to [-1, 1]), reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    return _shape(np.clip(amplitude * rng.standard_normal(_frames(seconds, rate)), -1.0, 1.0), channels)


def chirp(
    seconds: float, rate: int, f0: float = 200.0, f1: float = 4000.0, amplitude: float = 0.3, channels: int = 1
) -> np.ndarray:
    """A linear sweep from ``f0`` to ``f1`` Hz over ``seconds``, float32."""
    t = np.arange(_frames(seconds, rate)) / rate
    k = (f1 - f0) / max(seconds, 1e-9)
    return _shape(amplitude * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t)), channels)


def silence(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """Digital silence, float32."""
    return _shape(np.zeros(_frames(seconds, rate)), channels)


def mixture(*signals: np.ndarray) -> np.ndarray:
    """Sum signals of possibly different lengths (shorter ones zero-padded at the end), clipped to [-1, 1]."""
    if not signals:
        raise ValueError("mixture needs at least one signal")
    length = max(len(s) for s in signals)
    shape = (length, *signals[0].shape[1:])
    out = np.zeros(shape, np.float32)
    for s in signals:
        out[: len(s)] += s
    return np.clip(out, -1.0, 1.0)


def concat(*signals: np.ndarray) -> np.ndarray:
    """Signals one after another, float32."""
    return np.concatenate(signals).astype(np.float32)


def rms(samples: np.ndarray) -> float:
    """Root mean square over all samples and channels."""
    x = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for silence."""
    level = rms(samples)
    return float(20 * np.log10(level)) if level > 0 else float("-inf")


def write_wav(path: str | Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``samples`` (``(n,)`` or ``(n, channels)``, floats in [-1, 1]) as a WAV file and return its path.

    ``subtype`` is a soundfile subtype: ``"PCM_16"`` (default, what most players and devices produce) or
    ``"FLOAT"`` for lossless float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate, subtype=subtype, format="WAV")
    return path


# ------------------------------------------------------------------------------------------------------ MQTT


@dataclass(frozen=True)
class Message:
    """One MQTT message as received."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    received: float = field(default_factory=time.monotonic, compare=False)

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


class MqttCollector:
    """A real paho-mqtt subscriber that records every message it receives, for assertions.

    It subscribes to ``topics`` on every (re)connect, so it keeps collecting across a broker restart.
    Thread-safe: paho's network thread appends, the test thread reads.

    Example::

        with MqttCollector(broker.host, broker.port, ["monitor/#"]) as mq:
            ...
            msg = mq.wait_for("monitor/status", lambda m: m.text == "online")
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str] = ("#",),
        qos: int = 1,
        client_id: str | None = None,
        connect: bool = True,
        clean_session: bool = True,
    ) -> None:
        """Create the client and, if ``connect``, start connecting in the background (see :meth:`wait_connected`).

        Args:
            host: Broker host.
            port: Broker port.
            topics: Topic filters (wildcards allowed) subscribed on every connect.
            qos: Subscription QoS.
            client_id: MQTT client id; a unique one is made if None.
            connect: Start connecting now (``connect_async`` + network loop); if the broker is down, the client
                keeps retrying about every second.
            clean_session: False for a persistent session (give a fixed ``client_id``): the broker then keeps the
                subscriptions and queues QoS>0 messages while the collector is disconnected.
        """
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.qos = qos
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._sub_mid: int | None = None
        self.connect_count = 0
        client_id = client_id or f"test-collector-{os.getpid()}-{id(self):x}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._started = False
        if connect:
            self.start()

    # paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            return
        self.connect_count += 1
        self._connected.set()
        if self.topics:
            _, mid = client.subscribe([(t, self.qos) for t in self.topics])
            self._sub_mid = mid
        else:
            self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connected.clear()
        self._subscribed.clear()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if mid == self._sub_mid:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        message = Message(topic=msg.topic, payload=bytes(msg.payload), retain=bool(msg.retain), qos=msg.qos)
        with self._lock:
            self._messages.append(message)

    # public API
    def start(self) -> MqttCollector:
        """Start connecting (idempotent)."""
        if not self._started:
            self._started = True
            self.client.connect_async(self.host, self.port, keepalive=30)
            self.client.loop_start()
        return self

    @property
    def connected(self) -> bool:
        """Whether the client is connected and its subscriptions are acknowledged."""
        return self._connected.is_set() and self._subscribed.is_set()

    def wait_connected(self, timeout: float = 10.0) -> MqttCollector:
        """Wait until connected *and* subscribed (SUBACK received), so no later publish can be missed."""
        wait_for(
            lambda: self.connected,
            timeout=timeout,
            message=f"MQTT collector did not connect and subscribe to {self.host}:{self.port}",
        )
        return self

    def messages(self, topic: str | None = None) -> list[Message]:
        """A snapshot of the messages received so far, oldest first; only those matching ``topic`` if given.

        ``topic`` may be an exact topic or a filter with ``+``/``#`` wildcards.
        """
        with self._lock:
            snapshot = list(self._messages)
        if topic is None:
            return snapshot
        return [m for m in snapshot if mqtt.topic_matches_sub(topic, m.topic)]

    def payloads(self, topic: str) -> list[bytes]:
        """The raw payloads received on ``topic`` (exact or filter), oldest first."""
        return [m.payload for m in self.messages(topic)]

    def json(self, topic: str) -> list[Any]:
        """The JSON-decoded payloads received on ``topic`` (exact or filter), oldest first.

        Empty payloads (retained-message deletions) are skipped.
        """
        return [m.json() for m in self.messages(topic) if m.payload]

    def last(self, topic: str) -> Message | None:
        """The latest message on ``topic``, or None."""
        found = self.messages(topic)
        return found[-1] if found else None

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Message], Any] | None = None,
        timeout: float = 10.0,
        since: int = 0,
    ) -> Message:
        """Wait for a message on ``topic`` (exact or filter) for which ``predicate`` is truthy and return it.

        Messages already received count too; pass ``since=len(collector.messages())`` taken earlier to consider
        only messages that arrived after that point. Returns the first match.
        """

        def find() -> Message | None:
            for m in self.messages()[since:]:
                if mqtt.topic_matches_sub(topic, m.topic) and (predicate is None or predicate(m)):
                    return m
            return None

        def describe() -> str:
            seen = [(m.topic, m.payload[:200]) for m in self.messages()[since:]]
            return f"no matching message on {topic!r}; received {len(seen)}: {seen[-20:]}"

        return wait_for(find, timeout=timeout, message=describe)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._lock:
            self._messages.clear()

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self.client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------- broker


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_mosquitto() -> str:
    """Path of the mosquitto binary (``/usr/sbin/mosquitto`` or on PATH); AssertionError if missing."""
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("mosquitto not found (apt-get install mosquitto); the MQTT tests need a real broker")


class Broker:
    """A private mosquitto on a loopback port, started and stopped on demand.

    The port is fixed at construction, so ``stop()`` then ``start()`` gives the same address; a test can also
    construct it without starting it (broker down at first) and start it later.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        workdir: str | Path | None = None,
        persistent: bool = False,
    ) -> None:
        """Prepare (not start) a broker.

        Args:
            port: Loopback port; a free one if None.
            host: Address to listen on.
            workdir: Folder for the config, log and database; a temporary one (removed by :meth:`close`) if None.
            persistent: ``persistence true``: retained messages, persistent sessions (``clean_session=False``
                clients) and their queued messages survive :meth:`stop` + :meth:`start` (saved at SIGTERM, not
                after :meth:`kill`).
        """
        self.host = host
        self.persistent = persistent
        self.port = port if port is not None else free_port(host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mosquitto-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"mosquitto-{self.port}.conf"
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"
        # Started as root, mosquitto drops to the user "mosquitto", which cannot write into our (root-owned, 0700)
        # temporary folders: keep the current user instead. Ignored when not started as root.
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true", f"user {user}"]
        if persistent:
            lines += ["persistence true", f"persistence_location {self.workdir}/", f"persistence_file {self.port}.db"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr", *(f"log_type {t}" for t in ("error", "warning", "notice", "information"))]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the mosquitto process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        """Start mosquitto and wait until the port accepts TCP connections. No-op if already running."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}: {self.log()}")
            return port_open(self.host, self.port)

        wait_for(ready, timeout=timeout, message=lambda: f"mosquitto not listening on {self.port}: {self.log()}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM mosquitto and wait for it to exit (SIGKILL if it does not within ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL mosquitto (an abrupt broker death: no clean disconnects) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = 10.0) -> Broker:
        """Stop, then start again on the same port."""
        self.stop(timeout)
        return self.start(timeout)

    def log(self) -> str:
        """mosquitto's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the broker and remove its temporary folder."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __repr__(self) -> str:
        return f"Broker({self.host}:{self.port}, running={self.running})"

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ PulseAudio


def _run(args: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


class PulseAudio:
    """A private PulseAudio daemon with a null sink ``virt`` whose monitor is the default source.

    Playing a file into the sink (:meth:`play`) makes it audible, in real time, to anything recording from the
    PortAudio/ALSA device ``pulse`` (:attr:`device_name`): a real capture path on a machine without a microphone.

    The daemon gets its own runtime folder (``PULSE_RUNTIME_PATH``, set in ``os.environ`` while it runs, so that
    pactl, paplay, PortAudio in this process and every subprocess the tests start all reach it). Test sessions
    running side by side on one machine therefore never share, reconfigure or kill each other's daemon. If
    ``PULSE_SERVER`` is set, that server is used instead and no daemon is started.
    """

    sink = "virt"
    source = "virt.monitor"
    device_name = "pulse"
    """The PortAudio device name that ``sounddevice`` should open."""

    def __init__(self) -> None:
        self.started_daemon = False
        self.runtime_dir: Path | None = None
        self.loaded_module: str | None = None
        self._saved_runtime_path: str | None = None
        self._players: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def tools_present() -> bool:
        """Whether pulseaudio, pactl and paplay are installed."""
        return all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "paplay"))

    @staticmethod
    def answering() -> bool:
        """Whether a PulseAudio server answers ``pactl info``."""
        try:
            return _run(["pactl", "info"], timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _sinks(self) -> list[str]:
        out = _run(["pactl", "list", "short", "sinks"]).stdout
        return [line.split("\t")[1] for line in out.splitlines() if "\t" in line]

    def _start_daemon(self, timeout: float) -> None:
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="pulse-test-"))  # short: the socket path has a length limit
        self._saved_runtime_path = os.environ.get("PULSE_RUNTIME_PATH")
        os.environ["PULSE_RUNTIME_PATH"] = str(self.runtime_dir)
        # As root, pulseaudio prints "This program is not intended to be run as root (unless --system is
        # specified)" and runs; --system (a system-wide daemon) is not wanted. Its output goes to a file, not a pipe:
        # a pipe inherited by the daemonised child would never reach EOF and the call would hang on it.
        with tempfile.TemporaryFile() as log:
            code = subprocess.call(
                [
                    "pulseaudio",
                    "--daemonize=yes",
                    "--exit-idle-time=-1",
                    "-n",
                    f"--load=module-null-sink sink_name={self.sink}",
                    "--load=module-native-protocol-unix",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=timeout,
            )
            log.seek(0)
            output = log.read().decode(errors="replace")
        if code != 0:
            self._restore_env()
            raise AssertionError(f"pulseaudio failed to start ({code}): {output}")
        self.started_daemon = True
        wait_for(self.answering, timeout=timeout, message=f"pulseaudio started but does not answer: {output}")

    def start(self, timeout: float = 15.0) -> PulseAudio:
        """Start the daemon (or use ``PULSE_SERVER``), make sure the ``virt`` null sink exists and is the default.

        Raises:
            AssertionError: If PulseAudio is not installed or does not come up.
        """
        if not self.tools_present():
            raise AssertionError(
                "PulseAudio is needed for the capture tests: apt-get install pulseaudio pulseaudio-utils "
                "libasound2-plugins libportaudio2"
            )
        if os.environ.get("PULSE_SERVER"):
            wait_for(self.answering, timeout=timeout, message=f"PULSE_SERVER={os.environ['PULSE_SERVER']} is down")
        else:
            self._start_daemon(timeout)
        if self.sink not in self._sinks():
            self.loaded_module = self._load_sink()
        self._make_default(timeout)
        return self

    def _load_sink(self) -> str:
        loaded = _run(["pactl", "load-module", "module-null-sink", f"sink_name={self.sink}"])
        if loaded.returncode != 0:
            raise AssertionError(f"could not load the null sink: {loaded.stderr}")
        return loaded.stdout.strip()

    def _make_default(self, timeout: float) -> None:
        wait_for(lambda: self.sink in self._sinks(), timeout=timeout, message=f"sink {self.sink} did not appear")
        for args in (["set-default-sink", self.sink], ["set-default-source", self.source]):
            result = _run(["pactl", *args])
            if result.returncode != 0:
                raise AssertionError(f"pactl {' '.join(args)} failed: {result.stderr}")

    def unplug(self, timeout: float = 15.0) -> None:
        """Unload the ``virt`` null sink, like pulling out a USB microphone: streams recording from it end."""
        modules = _run(["pactl", "list", "short", "modules"]).stdout.splitlines()
        ids = [ln.split("\t")[0] for ln in modules if "module-null-sink" in ln and f"sink_name={self.sink}" in ln]
        if not ids:
            raise AssertionError(f"no null sink {self.sink} to unplug")
        for module in ids:
            result = _run(["pactl", "unload-module", module])
            if result.returncode != 0:
                raise AssertionError(f"pactl unload-module {module} failed: {result.stderr}")
        wait_for(lambda: self.sink not in self._sinks(), timeout=timeout, message=f"sink {self.sink} stayed")

    def replug(self, timeout: float = 15.0) -> None:
        """Undo :meth:`unplug`: load the ``virt`` null sink again and make it (and its monitor) the default."""
        module = self._load_sink()
        if self.loaded_module is not None:  # ours to unload at stop()
            self.loaded_module = module
        self._make_default(timeout)

    def play(self, wav_path: str | Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav_path`` into the ``virt`` sink (``paplay -d virt``), in real time, and return the player.

        The player runs in the background; wait on it or terminate it. Players still running at
        :meth:`stop_players` / :meth:`stop` are terminated.
        """
        player = subprocess.Popen(
            ["paplay", "-d", self.sink, str(wav_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._players.append(player)
        return player

    def stop_players(self) -> None:
        """Terminate the players started by :meth:`play` that are still running."""
        for player in self._players:
            if player.poll() is None:
                player.terminate()
                try:
                    player.wait(5)
                except subprocess.TimeoutExpired:
                    player.kill()
                    player.wait(5)
        self._players.clear()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the players, then undo :meth:`start`: kill the daemon it started, or unload the sink it loaded."""
        self.stop_players()
        if self.started_daemon:
            _run(["pulseaudio", "--kill"])  # the daemon of PULSE_RUNTIME_PATH, i.e. ours
            wait_for(lambda: not self.answering(), timeout=timeout, message="pulseaudio --kill did not stop it")
            self.started_daemon = False
            self._restore_env()
        elif self.loaded_module:
            _run(["pactl", "unload-module", self.loaded_module])
        self.loaded_module = None

    def _restore_env(self) -> None:
        if self._saved_runtime_path is None:
            os.environ.pop("PULSE_RUNTIME_PATH", None)
        else:
            os.environ["PULSE_RUNTIME_PATH"] = self._saved_runtime_path
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None


def reinitialize_portaudio() -> None:
    """Make an already imported ``sounddevice`` rescan devices (PortAudio enumerates them only at init).

    ``sounddevice`` initialises PortAudio when imported; if that happened before the PulseAudio daemon ran, the
    ``pulse`` device is missing until PortAudio is terminated and initialised again.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()
