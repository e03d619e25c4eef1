"""In-memory stand-ins for fast unit tests of what sits around the real parts (the real ones are tested over
the wire elsewhere): a publisher that records what would be sent, and an inference thread that applies label
changes the way the worker does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.labels import LabelRegistry
from monitor.mqtt.topics import Topics
from monitor.records import Event


@dataclass(frozen=True)
class Sent:
    """One message the code under test published."""

    topic: str
    payload: bytes
    retain: bool
    qos: int | None

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


class MemoryPublisher:
    """Has the interface of ``MqttPublisher`` that sinks use; records messages instead of sending them."""

    def __init__(self, topics: Topics, connected: bool = True) -> None:
        self.topics = topics
        self.connected = connected
        self.sent: list[Sent] = []
        self.subscriptions: list[str] = []
        self.handlers: list[Callable[[str, bytes, bool], None]] = []
        self.hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def publish(self, topic: str, payload: str | bytes | dict[str, Any], retain: bool = False,
                qos: int | None = None) -> None:
        """Record one message (dicts as JSON, as the real publisher encodes them)."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"))
        data = payload.encode() if isinstance(payload, str) else payload
        with self._cond:
            self.sent.append(Sent(topic, data, retain, qos))
            self._cond.notify_all()

    def publish_event(self, event: Event) -> None:
        """As the real publisher: the event JSON and the label's state (under the event's source)."""
        self.publish(self.topics.events_of(event.source), event.to_json_dict())
        self.set_state(event.label_id, event.type == "start", event.source)

    def set_state(self, label_id: str, on: bool, source: str = "") -> None:
        """Retained ON/OFF."""
        self.publish(self.topics.state(label_id, source), "ON" if on else "OFF", retain=True)

    def subscribe(self, topic: str) -> None:
        """Record a subscription."""
        self.subscriptions.append(topic)

    def add_message_handler(self, handler: Callable[[str, bytes, bool], None]) -> None:
        """Record a handler; ``deliver`` calls it."""
        self.handlers.append(handler)

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Record a hook; ``connect`` calls it."""
        self.hooks.append(hook)

    def wait_connected(self, timeout: float) -> bool:
        """Whether connected (never waits)."""
        return self.connected

    # --- driving it from a test ----------------------------------------------------------------------------
    def connect(self) -> None:
        """Run the on-connect hooks as the network thread would."""
        self.connected = True
        for hook in self.hooks:
            hook()

    def deliver(self, topic: str, payload: bytes | str, retained: bool = False) -> None:
        """Hand an incoming message to the handlers as the network thread would (``retained``: the broker's
        replay of a retained message on subscribe)."""
        data = payload.encode() if isinstance(payload, str) else payload
        for handler in self.handlers:
            handler(topic, data, retained)

    def on(self, topic: str) -> list[Sent]:
        """Messages published on ``topic`` so far."""
        with self._cond:
            return [m for m in self.sent if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout: float = 30.0) -> list[Sent]:
        """Wait until ``count`` messages were published on ``topic``; returns them."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len([m for m in self.sent if m.topic == topic]) >= count, timeout)
        assert ok, f"no {count} message(s) on {topic}; sent: {[m.topic for m in self.sent]}"
        return self.on(topic)


class FakeInference:
    """A thread that applies label changes like the inference worker: prompts containing ``fail`` cannot be
    encoded. Use as a context manager."""

    def __init__(self, registry: LabelRegistry) -> None:
        self.registry = registry
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-inference", daemon=True)

    def _run(self) -> None:
        seen = self.registry.applied().version
        while not self._stop.is_set():
            wanted = self.registry.wait_changed(seen, timeout=60, stop=self._stop)
            if wanted.version == seen:
                continue
            failed = {lbl.name: "cannot encode the prompts: scripted failure"
                      for lbl in wanted.labels if any("fail" in p for p in lbl.prompts)}
            seen = wanted.version
            self.registry.settle(wanted, failed)

    def __enter__(self) -> FakeInference:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.registry.wake()
        self._thread.join(5)
