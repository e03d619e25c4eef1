"""Config schema: the documented default is valid; every bad key is reported with its path; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_config
from monitor.labels import labels_from_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_is_valid() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.model == "laion/clap-htsat-unfused"
    assert cfg.audio.window_seconds == 5.0 and cfg.audio.hop_seconds == 1.0
    assert cfg.mqtt is not None and cfg.mqtt.qos == 1
    assert cfg.mqtt.resolved_prefix().startswith("sound-monitor/")


def test_minimal_config_defaults() -> None:
    cfg = parse_config({"labels": [{"name": "Dog Barking!"}]})
    lbl = cfg.labels[0]
    assert lbl.slug == "dog_barking"
    assert labels_from_config(cfg).scored()[0].prompts == ("This is a sound of Dog Barking!.",)
    assert cfg.label_threshold(lbl) == cfg.detection.threshold
    assert cfg.mqtt is None
    assert "silence" in cfg.background


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"labels": [{"name": "a", "threshold": 1.5}]}, "labels[0].threshold: must be between 0 and 1"),
        ({"labels": [{"name": "a"}], "mqtt": {"host": "h", "prot": 1}}, "mqtt.prot: unknown key"),
        ({"labels": []}, "labels: "),
        ({}, "labels: required key is missing"),
        ({"labels": [{"name": "a"}], "audio": {"hop_seconds": 6}}, "audio: "),
        ({"labels": [{"name": "a"}], "prompt_template": "no slot"}, "prompt_template: must contain '{}'"),
        ({"labels": [{"name": "a b"}, {"name": "A-B"}]}, "same id 'a_b'"),
        ({"labels": [{"name": "a"}], "mqtt": {"host": "h", "topic_prefix": "x/#"}}, "mqtt.topic_prefix:"),
        ({"labels": [{"name": "a"}], "mqtt": {"host": "h", "password": "x", "password_env": "Y"}}, "only one of"),
    ],
)
def test_bad_values_name_their_key(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_check_config_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "labels:\n  - name: glass\n    threshold: 2\n  - name: dog\n    promtps: [x]\n"
        "mqtt:\n  host: h\n  prot: 1883\n  qos: 3\naudio:\n  window_secs: 5\n"
    )
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    for line in ("labels[0].threshold: must be between 0 and 1", "labels[1].promtps: unknown key",
                 "mqtt.prot: unknown key", "mqtt.qos: must be between 0 and 2", "audio.window_secs: unknown key"):
        assert line in proc.stderr, proc.stderr


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "line" in info.value.problems[0]


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config("/nonexistent/config.yaml")


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = parse_config({"labels": [{"name": "a"}], "mqtt": {"host": "h", "password_file": str(pw)}})
    assert cfg.mqtt is not None and cfg.mqtt.resolved_password() == "s3cret"
    monkeypatch.setenv("MQTT_PW", "fromenv")
    cfg = parse_config({"labels": [{"name": "a"}], "mqtt": {"host": "h", "password_env": "MQTT_PW"}})
    assert cfg.mqtt is not None and cfg.mqtt.resolved_password() == "fromenv"
    cfg = parse_config({"labels": [{"name": "a"}], "mqtt": {"host": "h", "password": "inline"}})
    assert "inline" not in repr(cfg)  # never printed in logs or reprs
