"""A private PulseAudio daemon with a null sink: a real capture path on a machine without a microphone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from support.wait import wait_for

__all__ = ["ExtraMicrophone", "PulseAudio", "reinitialize_portaudio"]


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

    def add_microphone(self, name: str, config_home: Path) -> ExtraMicrophone:
        """Another virtual microphone: a null sink ``name`` and an ALSA device ``name`` that records from its monitor.

        PortAudio lists ALSA devices from the ALSA configuration, so the device is defined in
        ``config_home/alsa/asoundrc``, which ALSA reads for a process whose ``XDG_CONFIG_HOME`` is ``config_home``
        (:attr:`ExtraMicrophone.env`): nothing outside the test's folder changes. ``remove()`` unloads the sink.
        """
        loaded = _run(["pactl", "load-module", "module-null-sink", f"sink_name={name}"])
        if loaded.returncode != 0:
            raise AssertionError(f"could not load the null sink {name}: {loaded.stderr}")
        wait_for(lambda: name in self._sinks(), message=f"sink {name} did not appear")
        rc = config_home / "alsa" / "asoundrc"
        rc.parent.mkdir(parents=True, exist_ok=True)
        with open(rc, "a") as f:
            f.write(f'pcm.{name} {{\n type pulse\n device "{name}.monitor"\n'
                    f' hint {{ show on\n description "test microphone {name}" }}\n}}\n')
        return ExtraMicrophone(self, name, loaded.stdout.strip(), config_home)

    def play(self, wav_path: str | Path, sink: str | None = None) -> subprocess.Popen[bytes]:
        """Start playing ``wav_path`` into the ``virt`` sink (or ``sink``), in real time, and return the player.

        The player runs in the background; wait on it or terminate it. Players still running at
        :meth:`stop_players` / :meth:`stop` are terminated.
        """
        player = subprocess.Popen(
            ["paplay", "-d", sink or self.sink, str(wav_path)],
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


class ExtraMicrophone:
    """A second virtual microphone made by :meth:`PulseAudio.add_microphone`."""

    def __init__(self, pulse: PulseAudio, name: str, module: str, config_home: Path) -> None:
        self.pulse = pulse
        self.device_name = self.sink = name
        self.module = module
        self.env = {"XDG_CONFIG_HOME": str(config_home)}
        """Environment of a process that should see the device (PortAudio lists it from ALSA's configuration)."""

    def play(self, wav_path: str | Path) -> subprocess.Popen[bytes]:
        """Play ``wav_path`` into this microphone, in real time."""
        return self.pulse.play(wav_path, sink=self.sink)

    def remove(self) -> None:
        """Unload its null sink."""
        _run(["pactl", "unload-module", self.module])


def reinitialize_portaudio() -> None:
    """Make an already imported ``sounddevice`` rescan devices (PortAudio enumerates them only at init).

    ``sounddevice`` initialises PortAudio when imported; if that happened before the PulseAudio daemon ran, the
    ``pulse`` device is missing until PortAudio is terminated and initialised again.
    """
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()
