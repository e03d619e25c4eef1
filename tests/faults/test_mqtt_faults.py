"""The broker as bad input: message order on every connect, and connection errors that say what failed.

* Order: a fresh subscriber sees every label's state and every discovery config before ``online``, at start
  (after a crash left a retained ``ON``) and after a broker restart that lost every retained message.
* Errors: a plain client on a TLS port, TLS on a plain port, a CA that did not sign the broker's certificate,
  nothing listening, a broker that refuses the client: each gets its own error line, once per cause and not once
  per retry. Every broker is a real mosquitto (TLS listeners with certificates made by ``openssl`` at test time).
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.audio import audio_file
from support.broker import Broker, free_port
from support.config import NODE_ID, PREFIX, REPLAY_LABELS, make_config, write_config
from support.mqtt import Message, MqttCollector, late_view, retained, sync
from support.procs import MonitorProcess
from support.runner import RunningMonitor
from support.tls import Certificates, make_ca, make_certificates
from support.wait import wait_for

from monitor.config import parse_config, slugify
from monitor.mqtt.publisher import MqttPublisher
from monitor.mqtt.topics import Topics

AVAILABILITY = f"{PREFIX}/availability"
FILTERS = [f"{PREFIX}/#", "homeassistant/#"]


# --- order on connect ------------------------------------------------------------------------------------------

def _expected_before_online(labels: list[str]) -> set[str]:
    """Topics a fresh subscriber must have been sent before ``online``: states and discovery configs."""
    topics = {f"homeassistant/sensor/{NODE_ID}/level/config", f"{PREFIX}/config"}
    for name in labels:
        label_id = slugify(name)
        topics |= {f"{PREFIX}/{label_id}/state", f"homeassistant/binary_sensor/{NODE_ID}/{label_id}/config",
                   f"homeassistant/event/{NODE_ID}/{label_id}/config"}
    return topics


def _before_online(messages: list[Message]) -> dict[str, bytes]:
    """Topic → last payload of the messages that arrived before the first ``online`` (which must be there)."""
    first = next(i for i, m in enumerate(messages) if m.topic == AVAILABILITY and m.text == "online")
    return {m.topic: m.payload for m in messages[:first]}


def test_states_and_discovery_go_out_before_online_at_start(tiny_model: Path, broker: Broker, tmp_path: Path
                                                            ) -> None:
    """A crash left ``dog barking`` retained ON: Home Assistant must see it OFF before it sees the node online."""
    with MqttCollector(broker.host, broker.port, FILTERS) as sub:
        sub.wait_connected()
        sub.client.publish(f"{PREFIX}/dog_barking/state", "ON", qos=1, retain=True).wait_for_publish(5)
        sync(sub)
        since = len(sub.messages())
        cfg = make_config(tiny_model, broker, labels=REPLAY_LABELS, threshold=1.0)  # no events
        with RunningMonitor(cfg, audio_file(tmp_path, 60)[0]) as mon:
            sub.wait_for(AVAILABILITY, lambda m: m.text == "online", since=since, timeout=30)
            before = _before_online(sub.messages()[since:])
            mon.stop.set()
            assert mon.finish() == 0
    assert _expected_before_online(REPLAY_LABELS) <= set(before), sorted(before)
    assert all(before[f"{PREFIX}/{slugify(n)}/state"] == b"OFF" for n in REPLAY_LABELS)


def test_states_come_back_before_online_after_a_broker_restart(tiny_model: Path, broker_factory: Any,
                                                               tmp_path: Path) -> None:
    """A broker without persistence restarts and forgets every retained message; on the reconnect the monitor
    sends the states again (not only at its next event), with discovery, all before ``online``.

    The monitor is paused (SIGSTOP) across the restart so the fresh subscriber is surely subscribed before the
    monitor reconnects: the order it sees is the order the monitor published in, not a race between the two.
    """
    broker: Broker = broker_factory(persistent=False)
    cfg = write_config(tmp_path / "c.yaml", tiny_model, broker, REPLAY_LABELS, 1.0)
    wav = audio_file(tmp_path, 90)[0]
    with MonitorProcess(["replay", str(wav), "--config", str(cfg), "--realtime"]) as mon:
        with MqttCollector(broker.host, broker.port, [AVAILABILITY]) as first:
            first.wait_for(AVAILABILITY, lambda m: m.text == "online", timeout=60)
        mon.proc.send_signal(signal.SIGSTOP)
        try:
            broker.restart()
            with late_view(broker, *FILTERS) as empty:
                assert not retained(empty, "#"), "the restarted broker should have forgotten everything"
            fresh = MqttCollector(broker.host, broker.port, FILTERS).wait_connected()
        finally:
            mon.proc.send_signal(signal.SIGCONT)
        with fresh:
            fresh.wait_for(AVAILABILITY, lambda m: m.text == "online", timeout=60)
            before = _before_online(fresh.messages())
        assert _expected_before_online(REPLAY_LABELS) <= set(before), sorted(before)
        with late_view(broker, f"{PREFIX}/#") as view:
            states = retained(view, f"{PREFIX}/+/state")
        assert states == {f"{PREFIX}/{slugify(n)}/state": b"OFF" for n in REPLAY_LABELS}
        mon.proc.terminate()
        assert mon.wait(timeout=60) == 0, mon.stderr()[-2000:]


# --- connection errors -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ca(tmp_path_factory.mktemp("wrong-ca"), "wrong")[0]


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Certificates) -> Iterator[tuple[Broker, int]]:
    """A mosquitto with its plain listener and a TLS listener (the second value: its port)."""
    tls_port = free_port()
    lines = [f"listener {tls_port} 127.0.0.1", f"cafile {certs.ca}", f"certfile {certs.cert}", f"keyfile {certs.key}"]
    with Broker(workdir=tmp_path / "tls-broker", extra_config=lines) as b:
        yield b, tls_port


def _publisher(port: int, **mqtt: Any) -> MqttPublisher:
    cfg = parse_config({"model": "no-model", "labels": [{"name": "x"}],
                        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, **mqtt}})
    assert cfg.mqtt is not None
    return MqttPublisher(cfg.mqtt, Topics.from_config(cfg))


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "monitor.mqtt.publisher" and r.levelno >= logging.ERROR]


def _logged_once_over_retries(pub: MqttPublisher, caplog: pytest.LogCaptureFixture, expected: str) -> str:
    """Run ``pub`` until its third attempt began (so two have failed and been handled); one error line, matching."""
    caplog.set_level(logging.DEBUG, logger="monitor.mqtt.publisher")
    pub.start()
    try:
        wait_for(lambda: pub.connect_attempts >= 3, timeout=30, message=lambda: f"attempts: {pub.connect_attempts}")
    finally:
        pub.stop(timeout=0.5)
    failures = [r for r in caplog.records if r.getMessage().startswith("MQTT: connection attempt")]
    assert len(failures) >= 2
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert re.search(expected, errors[0]), errors[0]
    assert errors[0].endswith("retrying with backoff, events are held")
    return errors[0]


def test_plain_client_on_a_tls_port(tls_broker: tuple[Broker, int], caplog: pytest.LogCaptureFixture) -> None:
    broker, tls_port = tls_broker
    _logged_once_over_retries(_publisher(tls_port), caplog,
                              rf"broker 127\.0\.0\.1:{tls_port} closed the connection without answering CONNECT: "
                              r"is that port a TLS listener\?")
    # Real attempts: mosquitto saw (at least) two plain-text clients on its TLS port (its log file lags: wait for
    # it). Depending on how far a handshake got, it logs the connection on the port or only the TLS failure.
    def attempts() -> int:
        log = broker.log()
        return log.count(f"on port {tls_port}.") + log.count("SSL routines::wrong version number")

    wait_for(lambda: attempts() >= 2, message=lambda: broker.log()[-2000:])


def test_tls_client_on_a_plain_port(tls_broker: tuple[Broker, int], certs: Certificates,
                                    caplog: pytest.LogCaptureFixture) -> None:
    broker, _ = tls_broker
    _logged_once_over_retries(_publisher(broker.port, tls=True, ca_certs=str(certs.ca)), caplog,
                              rf"TLS with broker 127\.0\.0\.1:{broker.port} failed: TLS handshake failed .*"
                              r"is that port a TLS listener\?")


def test_a_ca_that_did_not_sign_the_broker_certificate(tls_broker: tuple[Broker, int], wrong_ca: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    _, tls_port = tls_broker
    _logged_once_over_retries(_publisher(tls_port, tls=True, ca_certs=str(wrong_ca)), caplog,
                              r"certificate verification failed \(self.signed certificate in certificate chain\)")


def test_the_right_ca_connects(tls_broker: tuple[Broker, int], certs: Certificates,
                               caplog: pytest.LogCaptureFixture) -> None:
    _, tls_port = tls_broker
    pub = _publisher(tls_port, tls=True, ca_certs=str(certs.ca))
    pub.start()
    try:
        assert pub.wait_connected(30)
    finally:
        pub.stop(timeout=2)
    assert not _errors(caplog)


def test_nothing_listening_then_a_broker_that_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Connection refused is logged once over its retries; when the cause changes (a broker appears but refuses
    the client), the new cause is logged once, with the broker's reason code."""
    caplog.set_level(logging.DEBUG, logger="monitor.mqtt.publisher")
    port = free_port()

    def attempts_failed(cause: str) -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("MQTT: connection attempt")
                   and cause in r.getMessage())

    pub = _publisher(port)
    pub.start()
    try:
        wait_for(lambda: attempts_failed("connection refused") >= 2, timeout=30)
        with Broker(port=port, workdir=tmp_path / "auth", extra_config=["allow_anonymous false"]) as closed:
            wait_for(lambda: attempts_failed("Not authorized") >= 2, timeout=30, message=closed.log)
    finally:
        pub.stop(timeout=0.5)
    errors = _errors(caplog)
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"MQTT: cannot reach broker 127.0.0.1:{port}: connection refused")
    assert f"broker 127.0.0.1:{port} refused the connection: Not authorized (reason code 135)" in errors[1]
