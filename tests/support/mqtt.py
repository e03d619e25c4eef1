"""A real MQTT subscriber that records what it receives, and helpers to read retained state through it."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from support.config import PREFIX
from support.wait import wait_for

if TYPE_CHECKING:
    from typing_extensions import Self

    from support.broker import Broker

__all__ = ["SYNC_TOPIC", "Message", "MqttCollector", "late_view", "retained", "sync"]

SYNC_TOPIC = f"{PREFIX}/_test_sync"


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
        timeout: float = 60.0,
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


def sync(collector: MqttCollector, topic: str = SYNC_TOPIC) -> None:
    """Round trip through the broker: everything the broker had queued for ``collector`` before has arrived.

    The broker handles one client's packets in order, so once our own message comes back, the retained messages
    for our earlier subscriptions have been delivered too. ``topic`` must match one of the collector's filters.
    """
    token = uuid.uuid4().hex.encode()
    collector.client.publish(topic, token, qos=1)
    collector.wait_for(topic, lambda m: m.payload == token)


def retained(collector: MqttCollector, pattern: str) -> dict[str, bytes]:
    """Latest retained payload per topic matching ``pattern`` (empty payloads = deleted, left out)."""
    out: dict[str, bytes] = {}
    for m in collector.messages(pattern):
        if m.retain:
            out[m.topic] = m.payload
    return {t: p for t, p in out.items() if p}


def late_view(broker: Broker, *filters: str) -> MqttCollector:
    """A fresh subscriber that has received every retained message under ``filters`` (close it after use)."""
    c = MqttCollector(broker.host, broker.port, [*filters, SYNC_TOPIC])
    c.wait_connected()
    sync(c)
    return c
