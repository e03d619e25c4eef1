"""MQTT publishing: availability with a Last Will, retained per-label state, JSON events.

A broker that is down is normal (boot order, restarts): the client retries with backoff from the very
first connect, the monitor keeps listening, and messages wait in a bounded outbox that is delivered
in order once connected. When the outbox is full the oldest message is dropped and logged.

On every connect, the on-connect hooks queue what a fresh subscriber needs (label states, discovery, the
summary) and ``online`` is queued after them: nobody sees the node online with stale states. A failed
connection is logged with its cause (:mod:`monitor.mqtt.errors`) once per change of cause, not per retry.
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
from monitor.mqtt.errors import closed_before_connack, describe_connect_error, refused
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


class _Client(mqtt.Client):
    """paho's client, counting connection attempts and keeping what the last one raised.

    paho's ``on_connect_fail`` carries no exception, and its network loop swallows the one ``reconnect`` raised
    (TCP connect and TLS handshake happen there); this is the one place to see it.
    """

    attempts = 0
    last_error: OSError | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.attempts += 1
        self.last_error = None
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise


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
        self._where = f"{cfg.host}:{cfg.port}"
        self._cause: str | None = None  # why the connection fails, as last logged; None while connected
        self._answered = False  # the current attempt got a CONNACK (network thread only)
        self._direct: int | None = None  # thread id whose publishes skip the outbox: paho's, in on-connect hooks
        self._connects = 0  # successful connects so far (under _cond)

        client = _Client(CallbackAPIVersion.VERSION2, client_id=cfg.resolved_client_id(), clean_session=True)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.resolved_password())
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_certs) if cfg.ca_certs else None, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_pre_connect = self._handle_pre_connect
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
        if self._direct == threading.get_ident():
            # An on-connect hook: straight to paho, so it goes out right after CONNACK, ahead of what paho resends
            # from the previous connection (its stale `online` among them) and of what the outbox held.
            self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            return
        with self._cond:
            if len(self._outbox) >= self.cfg.max_pending:
                old = self._outbox.popleft()
                self.dropped += 1
                log.warning("MQTT: outbox full (%d), dropped oldest message for %s", self.cfg.max_pending, old.topic)
            self._outbox.append(msg)
            self._cond.notify_all()

    def publish_event(self, event: Event) -> None:
        """Event JSON on ``<prefix>[/<source>]/events`` and the label's retained ON/OFF state."""
        self.publish(self.topics.events_of(event.source), event.to_json_dict())
        self.set_state(event.label_id, event.type == "start", event.source)

    def set_state(self, label_id: str, on: bool, source: str = "") -> None:
        """Retained ``ON``/``OFF`` on ``<prefix>[/<source>]/<label_id>/state``."""
        self.publish(self.topics.state(label_id, source), "ON" if on else "OFF", retain=True)

    def pending(self) -> int:
        """Messages waiting in the outbox."""
        with self._cond:
            return len(self._outbox)

    @property
    def connect_attempts(self) -> int:
        """Connection attempts so far (successful or not)."""
        return self.client.attempts

    # --- internals ---------------------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self.connected and self._outbox))
                if self._stopping:
                    return
                msg = self._outbox[0]
                connection = self._connects
            info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
            with self._cond:
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    # qos>0 messages now belong to paho, which resends them after a reconnect.
                    self._outbox.popleft()
                    self._cond.notify_all()
                elif connection == self._connects:  # (a failure from before a reconnect says nothing of it)
                    # Not connected after all: keep the message first in line and wait for the reconnect.
                    self.connected = False

    def _handle_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._answered = False  # network thread, at the start of every attempt

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._answered = True
        if reason.is_failure:
            self._failed(refused(self._where, reason))
            return
        log.info("MQTT: connected to %s", self._where)
        self._cause = None
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._direct = threading.get_ident()
        try:
            for hook in self._on_connect_hooks:  # states, discovery and the summary, sent at once (see publish)
                try:
                    hook()
                except Exception:
                    log.exception("MQTT on-connect hook failed")
        finally:
            self._direct = None
        with self._cond:
            # `online` last, through the outbox, so whoever sees it was sent every state and config of this
            # connection (and what was held meanwhile) first. Appended past max_pending: never dropped for room.
            self._outbox.append(Message(self.topics.availability, b"online", True, 1))
            self._connects += 1
            self.connected = True
            self._cond.notify_all()

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = self.client.last_error
        cause = (describe_connect_error(exc, self._where, self.cfg.tls) if exc is not None
                 else f"cannot connect to broker {self._where}")
        self._failed(cause)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._cond:
            was = self.connected
            self.connected = False
        if self._stopping:
            return
        if was:
            log.error("MQTT: lost connection to %s (%s); reconnecting, events are held", self._where, reason)
        elif not self._answered:  # TCP (and TLS) went through, then the broker hung up without a CONNACK
            self._failed(closed_before_connack(self._where, self.cfg.tls))

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        for handler in self._message_handlers:
            try:
                handler(message.topic, message.payload, bool(message.retain))
            except Exception:
                log.exception("MQTT: handling a message on %s failed", message.topic)

    def _failed(self, cause: str) -> None:
        """One failed attempt: at debug level every time, as an error once per change of cause (not per retry)."""
        log.debug("MQTT: connection attempt %d failed: %s", self.client.attempts, cause)
        if cause != self._cause:
            self._cause = cause
            log.error("MQTT: %s; retrying with backoff, events are held", cause)
