"""Shared fixtures: a tiny random CLAP model, private mosquitto brokers and a PulseAudio capture path.

All of them are real parts (model files loaded by transformers, a mosquitto process, a PulseAudio daemon that
PortAudio records from), not mocks. The classes behind them live in the ``support`` package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.broker import Broker
from support.pulse import PulseAudio, reinitialize_portaudio

from monitor.testing.randommodel import build_random_clap


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random CLAP checkpoint (seed 0), built once per session; load it like a hub id."""
    return build_random_clap(tmp_path_factory.mktemp("tiny-clap"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint as an ONNX model folder, written by the real export code (with the int8 audio model)."""
    from support.onnxmodels import export_folder

    return export_folder(tiny_model, tmp_path_factory.mktemp("tiny-onnx"))


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Make brokers: ``broker_factory(port=None, start=True, persistent=False) -> Broker``; all stopped at teardown.

    ``broker_factory(start=False)`` gives a broker that is down (its port chosen and free) until ``.start()``;
    ``persistent=True`` keeps retained messages and persistent sessions across ``.stop()`` + ``.start()``.
    """
    made: list[Broker] = []

    def make(port: int | None = None, start: bool = True, persistent: bool = False,
             extra_config: Sequence[str] = ()) -> Broker:
        b = Broker(port=port, workdir=tmp_path / f"broker-{len(made)}", persistent=persistent,
                   extra_config=extra_config)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    """A running mosquitto on a free loopback port (``.host``, ``.port``, ``.stop()``, ``.start()``, ``.kill()``)."""
    return broker_factory()


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseAudio]:
    """A private PulseAudio daemon with a null sink ``virt`` whose monitor is the default source.

    ``pulse.play(wav)`` feeds it in real time; record from the PortAudio device ``pulse.device_name`` (``"pulse"``).
    ``PULSE_RUNTIME_PATH`` points at the daemon for the whole session, so subprocesses reach it too. Fails (does not
    skip) if PulseAudio is not installed.
    """
    pa = PulseAudio().start()
    reinitialize_portaudio()  # a sounddevice imported before the daemon ran would not list "pulse"
    yield pa
    pa.stop()


@pytest.fixture(autouse=True)
def _stop_pulse_players(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``pulse``, terminate its players still running, so no sound leaks into the next."""
    yield
    if "pulse" in request.fixturenames:
        request.getfixturevalue("pulse").stop_players()
