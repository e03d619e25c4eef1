"""The test fixtures work against the real parts: transformers, mosquitto, PulseAudio and PortAudio."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import sounddevice as sd
import transformers
from support.audio import rms, tone, write_wav
from support.broker import Broker, port_open
from support.mqtt import MqttCollector
from support.pulse import PulseAudio
from support.wait import wait_for
from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

from monitor.testing.randommodel import build_random_clap

RATE = 48_000


# ------------------------------------------------------------------------------------------------- helpers


def test_wait_for_returns_value_and_raises_with_message() -> None:
    calls = iter([0, 0, 7])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.001) == 7
    with pytest.raises(AssertionError, match="never true"):
        wait_for(lambda: False, timeout=0.05, message="never true")


def test_audio_helpers_shapes_and_levels(tmp_path: Path) -> None:
    mono = tone(1.0, RATE, amplitude=0.5)
    stereo = tone(1.0, RATE, amplitude=0.5, channels=2)
    assert mono.shape == (RATE,) and mono.dtype == np.float32
    assert stereo.shape == (RATE, 2)
    assert rms(mono) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    import soundfile as sf

    data, rate = sf.read(str(write_wav(tmp_path / "t.wav", stereo, RATE)), dtype="float32")
    assert rate == RATE and data.shape == (RATE, 2)
    np.testing.assert_allclose(data, stereo, atol=1e-4)


# --------------------------------------------------------------------------------------------------- model


def test_tiny_model_loads_like_the_real_checkpoint(tiny_model: Path) -> None:
    model = ClapModel.from_pretrained(tiny_model)
    processor = ClapProcessor.from_pretrained(tiny_model)
    fe = processor.feature_extractor
    assert isinstance(fe, ClapFeatureExtractor)
    settings = {
        "feature_size": 64,
        "sampling_rate": 48_000,
        "fft_window_size": 1024,
        "hop_length": 480,
        "nb_max_samples": 480_000,
        "frequency_min": 50,
        "frequency_max": 14_000,
        "truncation": "rand_trunc",
        "padding": "repeatpad",
    }
    assert {k: getattr(fe, k) for k in settings} == settings
    assert isinstance(processor.tokenizer, RobertaTokenizer)
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    assert 800 <= len(processor.tokenizer) <= 1000
    ids = processor.tokenizer("This is a sound of dog barking.")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 5 <= len(ids) <= 16  # <s> ... </s>, about RoBERTa's length
    assert not model.config.audio_config.enable_fusion


def test_tiny_model_pipeline_scores(tiny_model: Path) -> None:
    pipe = transformers.pipeline("zero-shot-audio-classification", model=str(tiny_model))
    labels = ["dog barking", "siren", "silence"]
    result = pipe(tone(5.0, RATE), candidate_labels=labels)
    scores = {r["label"]: r["score"] for r in result}
    assert set(scores) == set(labels)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(scores.values()) - min(scores.values()) > 0.01, scores
    # and the audio matters: another sound gives other scores for the same labels
    other = {r["label"]: r["score"] for r in pipe(np.zeros(5 * RATE, np.float32), candidate_labels=labels)}
    assert max(abs(scores[k] - other[k]) for k in labels) > 0.01, (scores, other)


def test_tiny_model_is_small(tiny_model: Path) -> None:
    size = sum(f.stat().st_size for f in tiny_model.iterdir())
    assert size < 2_000_000, size


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_random_clap(tmp_path / "a", seed=3)
    b = build_random_clap(tmp_path / "b", seed=3)
    c = build_random_clap(tmp_path / "c", seed=4)
    names = sorted(f.name for f in a.iterdir())
    assert names == sorted(f.name for f in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


# ---------------------------------------------------------------------------------------------------- MQTT


def publish(broker: Broker, topic: str, payload: str, retain: bool = False, qos: int = 1) -> None:
    """Publish one message with a separate real client and wait until the broker acknowledged it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_broker_delivers_retained_message(broker: Broker) -> None:
    assert broker.running and port_open(broker.host, broker.port)
    publish(broker, "test/state", json.dumps({"on": True}), retain=True)
    with MqttCollector(broker.host, broker.port, ["test/#"]) as mq:
        mq.wait_connected()
        msg = mq.wait_for("test/state")
        assert msg.retain and msg.json() == {"on": True}
        publish(broker, "test/live", "x")
        live = mq.wait_for("test/+", lambda m: m.topic == "test/live")
        assert not live.retain and live.qos == 1
        assert mq.json("test/state") == [{"on": True}]
        assert [m.topic for m in mq.messages()] == ["test/state", "test/live"]


def test_broker_stop_then_start_on_same_port(broker: Broker) -> None:
    port = broker.port
    with MqttCollector(broker.host, port, ["t/#"]) as mq:
        mq.wait_connected()
        broker.stop()
        assert not broker.running and not port_open(broker.host, port)
        wait_for(lambda: not mq.connected, message="collector did not notice the broker stop")
        broker.start()
        assert broker.running and broker.port == port
        mq.wait_connected(timeout=60)  # paho reconnects by itself and the collector resubscribes
        assert mq.connect_count == 2
        publish(broker, "t/after", "1")
        assert mq.wait_for("t/after").payload == b"1"


def test_broker_down_at_first_then_started(broker_factory: Callable[..., Broker]) -> None:
    late = broker_factory(start=False)
    assert not late.running and not port_open(late.host, late.port)
    with MqttCollector(late.host, late.port, ["x"]) as mq:
        late.start()
        mq.wait_connected(timeout=60)
        publish(late, "x", "hello")
        assert mq.wait_for("x").text == "hello"


def test_persistent_broker_keeps_sessions_and_retained_across_restart(
    broker_factory: Callable[..., Broker],
) -> None:
    broker = broker_factory(persistent=True)
    publish(broker, "p/retained", "kept", retain=True)
    with MqttCollector(broker.host, broker.port, ["p/#"], client_id="persist-1", clean_session=False) as mq:
        mq.wait_connected()
    broker.stop()
    broker.start()
    publish(broker, "p/queued", "while away")  # QoS 1 to a known but offline persistent session: queued
    # Reconnect the same session without subscribing: the broker remembered the subscription and the queue.
    with MqttCollector(broker.host, broker.port, [], client_id="persist-1", clean_session=False) as mq:
        mq.wait_connected()
        assert mq.wait_for("p/queued").text == "while away"
    with MqttCollector(broker.host, broker.port, ["p/retained"]) as mq:
        assert mq.wait_connected().wait_for("p/retained").retain


def test_broker_kill(broker: Broker) -> None:
    broker.kill()
    assert not broker.running
    assert not port_open(broker.host, broker.port)


# --------------------------------------------------------------------------------------------- PulseAudio


def test_pulse_capture_records_played_tone(pulse: PulseAudio, tmp_path: Path) -> None:
    names = [d["name"] for d in sd.query_devices()]
    assert pulse.device_name in names, names
    wav = write_wav(tmp_path / "tone.wav", tone(3.0, RATE, freq=440.0, amplitude=0.3), RATE)

    blocks: list[np.ndarray] = []
    lock = threading.Lock()

    def callback(indata: np.ndarray, frames: int, time_info: object, status: sd.CallbackFlags) -> None:
        with lock:
            blocks.append(indata[:, 0].copy())

    def recorded() -> np.ndarray:
        with lock:
            return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    with sd.InputStream(device=pulse.device_name, samplerate=RATE, channels=1, dtype="float32", callback=callback):
        # nothing plays yet: the monitor of the null sink is silent
        wait_for(lambda: len(recorded()) >= RATE // 4, message="no audio frames arrive from the pulse device")
        assert rms(recorded()) < 1e-3
        start = len(recorded())
        player = pulse.play(wav)
        # then the tone arrives, paced in real time
        wait_for(
            lambda: len(recorded()) - start >= RATE and rms(recorded()[start:][-RATE // 2 :]) > 0.1,
            timeout=10,
            message=lambda: f"no tone recorded; rms {rms(recorded()[start:]):.4f}, player rc {player.poll()}",
        )
        loud = recorded()[start:][-RATE // 2 :]
    assert rms(loud) == pytest.approx(0.3 / np.sqrt(2), rel=0.2)
    spectrum = np.abs(np.fft.rfft(loud * np.hanning(len(loud))))
    peak_hz = np.argmax(spectrum) * RATE / len(loud)
    assert abs(peak_hz - 440.0) < 10.0, peak_hz
