"""Prometheus ``/metrics`` and ``/healthz``, read over HTTP with urllib while monitors run.

The first test is the issue's "done when": the real ``sound-monitor replay --realtime`` command with discovery,
metrics, level/scores and clips on, watched over MQTT and HTTP while it runs.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.audio import audio_file, concat, noise, silence, tone, write_wav
from support.broker import Broker, free_port
from support.config import NODE_ID, PREFIX, make_config, write_config
from support.mqtt import MqttCollector, late_view, retained
from support.procs import MonitorProcess
from support.runner import RunningMonitor
from support.wait import wait_for

from monitor.sinks.metrics import Metrics


def http_get(url: str) -> tuple[int, str]:
    """Status and body; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError) as exc:
        return 0, str(exc)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed exposition: (sample name, sorted labels) → value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_replay_realtime_serves_metrics_and_leaves_discovery_and_states(tiny_model: Path, broker: Broker,
                                                                        tmp_path: Path) -> None:
    port = free_port()
    wav, _ = audio_file(tmp_path, 40)
    cfg_path = write_config(
        tmp_path / "c.yaml", tiny_model, broker,
        labels=[{"name": "dog barking", "threshold": 0.0}, {"name": "glass breaking", "threshold": 0.5}],
        audio={"window_seconds": 2.0, "hop_seconds": 1.0},
        detection={"min_hits": 1, "end_after_seconds": 3.0, "cooldown_seconds": 0.0},
        mqtt={"publish_scores": True, "scores_top_n": 3},
        home_assistant={"discovery": True},
        metrics={"port": port, "bind": "127.0.0.1"},
        clips={"enabled": True, "folder": str(tmp_path / "clips"), "pre_roll_seconds": 1.0,
               "post_roll_seconds": 1.0, "format": "wav"},
    )
    base = f"http://127.0.0.1:{port}"
    with MqttCollector(broker.host, broker.port, [f"{PREFIX}/#", "homeassistant/#"]) as mq, \
            MonitorProcess(["replay", str(wav), "--config", str(cfg_path), "--realtime"]) as mon:
        mq.wait_connected()
        # Up before the model is loaded: /healthz answers at once, 503 with the reason until audio flows.
        wait_for(lambda: http_get(f"{base}/healthz")[0] == 200, timeout=90,
                 message=lambda: f"/healthz: {http_get(base + '/healthz')}; log: {mon.stderr()[-2000:]}")
        assert http_get(f"{base}/healthz") == (200, "ok\n")

        def scraped() -> str | None:
            code, text = http_get(f"{base}/metrics")
            scored = value(text, "sound_monitor_windows_scored_total") if code == 200 else None
            started = value(text, "sound_monitor_events_total", label="dog barking", type="start") if scored else None
            # Counted by the inference thread as scored, and by the main thread as handed to the sinks: wait for both.
            seen = value(text, "sound_monitor_inference_seconds_count") if code == 200 else None
            return text if scored and scored >= 3 and started and seen and seen >= 3 else None

        text = wait_for(scraped, timeout=60, message="metrics do not show scored windows and the event")
        assert all(name.startswith("sound_monitor_") for name, _ in samples(text))
        assert value(text, "sound_monitor_mqtt_connected") == 1.0
        assert value(text, "sound_monitor_healthy") == 1.0
        assert value(text, "sound_monitor_windows_dropped_total") == 0.0
        assert value(text, "sound_monitor_windows_skipped_total") == 0.0
        assert value(text, "sound_monitor_capture_overruns_total") == 0.0
        assert value(text, "sound_monitor_queue_depth") is not None
        assert -60 < value(text, "sound_monitor_level_dbfs") < 0
        assert value(text, "sound_monitor_inference_seconds_count") >= 3
        assert value(text, "sound_monitor_threshold", source="default", label="dog barking") == 0.0
        assert 0 <= value(text, "sound_monitor_score", source="default", label="glass breaking") <= 1

        # While it runs, a newcomer (Home Assistant) finds discovery for every label and the states retained.
        with late_view(broker, "homeassistant/#", f"{PREFIX}/#") as late:
            configs = {t: json.loads(p) for t, p in retained(late, "homeassistant/#").items()}
            states = retained(late, f"{PREFIX}/+/state")
        for slug in ("dog_barking", "glass_breaking"):
            bs = configs[f"homeassistant/binary_sensor/{NODE_ID}/{slug}/config"]
            assert bs["device_class"] == "sound" and bs["unique_id"] and bs["device"]["identifiers"]
            assert bs["state_topic"] == f"{PREFIX}/{slug}/state" and bs["availability"]
        assert states[f"{PREFIX}/dog_barking/state"] == b"ON"
        assert states[f"{PREFIX}/glass_breaking/state"] in (b"ON", b"OFF")
        # What it hears: level and top-3 scores per window.
        assert float(mq.wait_for(f"{PREFIX}/level").text) < 0
        top = mq.wait_for(f"{PREFIX}/scores").json()
        assert len(top["scores"]) == 3 and list(top["scores"].values()) == sorted(top["scores"].values(), reverse=True)
        # The event names its clip, and the clip is written while the run goes on.
        start = mq.wait_for(f"{PREFIX}/events", lambda m: m.json()["type"] == "start")
        clip = tmp_path / "clips" / start.json()["clip"]
        wait_for(clip.exists, timeout=20, message=f"{clip} not written")
        assert any(e.get("clip") == clip.name for e in mon.events("start"))

        mon.proc.terminate()
        assert mon.wait(timeout=60) == 0, mon.stderr()[-3000:]
    assert http_get(f"{base}/metrics")[0] == 0  # the server went with the process


def test_counters_match_the_run_and_healthz_says_why(tiny_model: Path, broker: Broker, tmp_path: Path) -> None:
    # Loud, silent, loud: the silent windows fall under the gate.
    x = concat(tone(3, 48000, 500, 0.3), silence(3, 48000), noise(3, 48000, 0.2, seed=1))
    wav = write_wav(tmp_path / "gated.wav", x, 48000)
    port = free_port()
    cfg = make_config(tiny_model, broker, labels=[{"name": "dog barking", "threshold": 0.0}, "glass breaking"],
                      audio={"min_dbfs": -50.0}, metrics={"port": port, "bind": "127.0.0.1"})
    base = f"http://127.0.0.1:{port}"
    run = RunningMonitor(cfg, wav, realtime=False)
    windows, events, monitor = run.windows, run.events, run.monitor
    metrics = next(s for s in monitor.sinks if isinstance(s, Metrics))
    code, reason = http_get(f"{base}/healthz")
    assert code == 503 and "starting" in reason
    assert value(http_get(f"{base}/metrics")[1], "sound_monitor_windows_scored_total") == 0.0
    metrics.stop = lambda: None  # keep serving after the run, to read the final counters
    try:
        assert run.start().finish() == 0
        text = http_get(f"{base}/metrics")[1]
        skipped = [w for w in windows if w.skipped]
        assert skipped and len(skipped) < len(windows)
        assert value(text, "sound_monitor_windows_scored_total") == len(windows) - len(skipped)
        assert value(text, "sound_monitor_windows_skipped_total") == len(skipped)
        assert value(text, "sound_monitor_inference_seconds_count") == len(windows) - len(skipped)
        for label in ("dog barking", "glass breaking"):
            for kind in ("start", "end"):
                n = sum(1 for e in events if e.label == label and e.type == kind)
                assert (value(text, "sound_monitor_events_total", label=label, type=kind) or 0) == n
        assert sum(1 for e in events if e.type == "start") >= 2  # the gap ends the first event
        assert abs(value(text, "sound_monitor_level_dbfs") - windows[-1].dbfs) < 1e-6
        # After the file, nothing makes progress: the health check names what stalled.
        ok, why = monitor.health(now=time.monotonic() + 60)
        assert not ok and "no audio" in why
        assert metrics.server is not None
    finally:
        Metrics.stop(metrics)
    assert http_get(f"{base}/healthz")[0] == 0  # closed


def test_metrics_port_taken_is_reported_and_the_monitor_runs(tiny_model: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    wav, _ = audio_file(tmp_path, 2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = make_config(tiny_model, metrics={"port": taken.getsockname()[1], "bind": "127.0.0.1"})
        run = RunningMonitor(cfg, wav, realtime=False)
        assert next(s for s in run.monitor.sinks if isinstance(s, Metrics)).server is None
        assert "cannot listen" in caplog.text
        assert run.start().finish() == 0 and run.windows
