"""Sending runtime commands over a real broker and waiting for their answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

from support.config import PREFIX
from support.mqtt import MqttCollector

__all__ = ["COMMAND", "RESPONSE", "Commander"]

COMMAND = f"{PREFIX}/command"
RESPONSE = f"{PREFIX}/command/response"


class Commander:
    """Sends commands and waits for the answer that echoes their id."""

    def __init__(self, collector: MqttCollector) -> None:
        self.mq = collector

    def send(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Publish ``command`` with a fresh ``id``; its answer."""
        cid = uuid.uuid4().hex[:8]
        self.mq.client.publish(COMMAND, json.dumps({**command, "id": cid}), qos=1)
        return self.mq.wait_for(RESPONSE, lambda m: m.json().get("id") == cid, timeout=timeout).json()

    def press(self, payload: str | bytes, timeout: float = 60.0) -> dict[str, Any]:
        """Publish a raw payload (a Home Assistant button's ``payload_press``, which has no id); the next answer."""
        since = len(self.mq.messages())
        self.mq.client.publish(COMMAND, payload, qos=1)
        return self.mq.wait_for(RESPONSE, since=since, timeout=timeout).json()

    def summary(self) -> dict[str, Any]:
        """The latest ``<prefix>/config`` summary."""
        last = self.mq.last(f"{PREFIX}/config")
        assert last is not None
        return last.json()
