"""What a source's config means once it passed the check: its label subset and threshold overrides (spelled as
the check accepts them), and Home Assistant ids that stay apart however sources and labels are named."""

from __future__ import annotations

from pathlib import Path

from support.config import make_config

from monitor.core.sourcerules import detection_rules, source_labels
from monitor.labelset import labels_from_config
from monitor.mqtt.haentities import Entities
from monitor.mqtt.topics import Topics


def test_labels_and_thresholds_of_a_source_match_in_any_case_as_the_check_accepts_them(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, labels=["dog barking", "glass breaking", "doorbell"], sources=[
        {"name": "yard", "url": "rtsp://cam/yard", "labels": ["DOG_BARKING", "Glass Breaking"],
         "thresholds": {"GLASS_BREAKING": 0.1}},
    ])
    labels = labels_from_config(cfg)
    seen = {lbl.label_id: lbl.threshold for lbl in source_labels(labels, cfg.sources[0])}
    assert seen == {"dog_barking": labels.find("dog_barking").threshold, "glass_breaking": 0.1}
    assert {r.label_id for r in detection_rules(labels, cfg.sources[0])} == {"dog_barking", "glass_breaking"}


def test_no_two_sources_share_a_home_assistant_id_whatever_their_names_and_labels(tmp_path: Path) -> None:
    # With '_' joining ids, "front" + "door bell" and "front-door" + "bell" both made ..._front_door_bell_sound.
    cfg = make_config(tmp_path, labels=["door bell", "bell", "level", "connectivity"],
                      sources=[{"name": "front", "url": "rtsp://cam/a"}, {"name": "front-door", "url": "rtsp://cam/b"},
                               {"name": "front_door_bell", "url": "rtsp://cam/c"}],
                      mqtt={"host": "127.0.0.1", "topic_prefix": "t"})
    topics = Topics.from_config(cfg)
    node = {"identifiers": [f"sound_monitor_{topics.node_id}"], "name": "n", "model": "m", "manufacturer": "s"}
    configs = Entities(cfg, topics, cfg.source_configs(), node, publish_level=True, input_entity=True,
                       teach_buttons=True).configs(labels_from_config(cfg))
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(unique_ids) == len(set(unique_ids)) == len(configs)
    devices = {c["device"]["identifiers"][0] for c in configs.values()}
    assert len(devices) == 4  # the node and its three sources
