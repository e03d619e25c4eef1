"""MQTT publishing: availability with a Last Will, retained per-label state, JSON events.

A broker that is down is normal (boot order, restarts): the client retries with backoff from the very
first connect, the monitor keeps listening, and messages wait in a bounded outbox that is delivered
in order once connected. When the outbox is full the oldest message is dropped and logged.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from monitor.config import MqttConfig
from monitor.mqtt.topics import Topics
from monitor.records import Event
from monitor.strictjson import dumps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One MQTT message waiting in the outbox."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


class MqttPublisher:
    """Owns the paho client and the outbox; safe to call from any thread."""

    def __init__(self, cfg: MqttConfig, topics: Topics) -> None:
        self.cfg = cfg
        self.topics = topics
        self.qos = cfg.qos
        self.connected = False
        self.dropped = 0
        self._outbox: deque[Message] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._subscriptions: list[str] = []
        self._message_handlers: list[Callable[[str, bytes, bool], None]] = []
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._drain, name="mqtt-outbox", daemon=True)
        self._last_error_log = 0.0

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.resolved_client_id(), clean_session=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.resolved_password())
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_certs) if cfg.ca_certs else None, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_connect_fail = self._handle_connect_fail
        self.client = client

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin connecting in the background (never raises for an unreachable broker)."""
        log.info("MQTT: connecting to %s:%d, topics under %s/", self.cfg.host, self.cfg.port, self.topics.prefix)
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()  # its thread retries the first connection too
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Deliver what is queued (up to ``timeout``), publish ``offline``, disconnect.

        A run shorter than the first connection (a short replay) still waits, up to ``timeout``, for the
        broker, so that what it queued is delivered rather than dropped at exit.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(lambda: self.connected and not self._outbox, max(0.0, deadline - time.monotonic()))
            self._stopping = True
            self._cond.notify_all()
            left = len(self._outbox)
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if left:
            log.warning("MQTT: %d queued message(s) not delivered at shutdown", left)
        if self.connected:
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.connected, timeout)

    def subscribe(self, topic: str) -> None:
        """Subscribe now and after every reconnect; messages go to ``on_message``."""
        self._subscriptions.append(topic)
        # Not gated on self.connected: that flag is set only after the on-connect hooks ran, and a topic added
        # meanwhile would miss both paths. paho answers MQTT_ERR_NO_CONN (harmless) when really disconnected.
        self.client.subscribe(topic, qos=1)

    def add_message_handler(self, handler: Callable[[str, bytes, bool], None]) -> None:
        """Also call ``handler(topic, payload, retained)`` (from the network thread) for every message received;
        ``retained`` is true for a message the broker kept and replays on subscribe (not a live one)."""
        self._message_handlers.append(handler)

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (from the network thread) after every successful connect."""
        self._on_connect_hooks.append(hook)

    # --- publishing --------------------------------------------------------------------------------
    def publish(self, topic: str, payload: str | bytes | dict[str, Any], retain: bool = False,
                qos: int | None = None) -> None:
        """Queue a message; the outbox thread sends it in order when connected."""
        if isinstance(payload, dict):
            payload = dumps(payload, what=f"payload for {topic}")
        data = payload.encode() if isinstance(payload, str) else payload
        msg = Message(topic, data, retain, self.qos if qos is None else qos)
        with self._cond:
            if len(self._outbox) >= self.cfg.max_pending:
                old = self._outbox.popleft()
                self.dropped += 1
                log.warning("MQTT: outbox full (%d), dropped oldest message for %s", self.cfg.max_pending, old.topic)
            self._outbox.append(msg)
            self._cond.notify_all()

    def publish_event(self, event: Event) -> None:
        """Event JSON on ``<prefix>/events`` and the label's retained ON/OFF state."""
        self.publish(self.topics.events, event.to_json_dict())
        self.set_state(event.label_id, event.type == "start")

    def set_state(self, label_id: str, on: bool) -> None:
        """Retained ``ON``/``OFF`` on ``<prefix>/<label_id>/state``."""
        self.publish(self.topics.state(label_id), "ON" if on else "OFF", retain=True)

    def pending(self) -> int:
        """Messages waiting in the outbox."""
        with self._cond:
            return len(self._outbox)

    # --- internals ---------------------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self.connected and self._outbox))
                if self._stopping:
                    return
                msg = self._outbox[0]
            info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            with self._cond:
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    # qos>0 messages now belong to paho, which resends them after a reconnect.
                    self._outbox.popleft()
                    self._cond.notify_all()
                else:
                    # Not connected after all: keep the message first in line and wait for the reconnect.
                    self.connected = False

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._log_error(f"MQTT: broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason}")
            return
        log.info("MQTT: connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        for hook in self._on_connect_hooks:
            try:
                hook()
            except Exception:
                log.exception("MQTT on-connect hook failed")
        with self._cond:
            self.connected = True
            self._cond.notify_all()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._log_error(
            f"MQTT: cannot reach broker {self.cfg.host}:{self.cfg.port}; retrying with backoff, events are held"
        )

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            was = self.connected
            self.connected = False
        if not self._stopping and was:
            log.error("MQTT: lost connection to %s:%d (%s); reconnecting, events are held", self.cfg.host,
                      self.cfg.port, reason)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for handler in self._message_handlers:
            try:
                handler(message.topic, message.payload, bool(message.retain))
            except Exception:
                log.exception("MQTT: handling a message on %s failed", message.topic)

    def _log_error(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 30:
            self._last_error_log = now
            log.error("%s", text)
