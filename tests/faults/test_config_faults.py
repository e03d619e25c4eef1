"""Bad configs, made at test time, through the real commands: ``check-config``, ``run`` and ``replay`` as subprocesses.

Each must exit 2 before anything else happens, with one line per problem naming its key path, the same lines
from every command (``run`` validates exactly what ``check-config`` validates), and never a traceback. The
configs name a model folder that passes the config check but cannot load, so a command that went past the
config (to the model or the microphone) would exit with another code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from monitor.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
UNSET_ENV = "SOUND_MONITOR_TEST_UNSET_PASSWORD"
PROBLEM_LINE = re.compile(r"^  (\(file\)|\(yaml\)|\(top level\)|[A-Za-z_][\w.]*(\[\d+\])*(\.[\w]+(\[\d+\])*)*): \S")


@dataclass(frozen=True)
class Case:
    """A bad config: its bytes (made from the test's folder) and the problem lines expected (prefixes)."""

    name: str
    content: Callable[[Path], bytes]
    expected: tuple[str, ...]


def yaml_bytes(**extra: object) -> Callable[[Path], bytes]:
    """A config with one label and a model folder that exists, plus ``extra`` (callables get the folder)."""

    def make(folder: Path) -> bytes:
        data: dict[str, object] = {"model": str(folder / "model"), "labels": [{"name": "dog barking"}]}
        for key, value in extra.items():
            data[key] = value(folder) if callable(value) else value
        return yaml.safe_dump(data, allow_unicode=True).encode()

    return make


def raw(text: bytes | str) -> Callable[[Path], bytes]:
    """A file of exactly these bytes (``{model}`` is replaced by the model folder)."""
    return lambda folder: (text if isinstance(text, bytes) else text.replace("{model}", str(folder / "model")).encode())


def mqtt(**keys: object) -> Callable[[Path], dict[str, object]]:
    """An ``mqtt`` section with these keys (callables get the folder)."""
    return lambda folder: {"host": "127.0.0.1", **{k: v(folder) if callable(v) else v for k, v in keys.items()}}


def alias_bomb(levels: int) -> bytes:
    lines = ["labels: [{name: a}]", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


CASES = [
    Case("not_utf8", raw(b"labels:\n  - name: caf\xe9\n"), ("(file): not UTF-8 text: byte 0xe9 on line 2",)),
    Case("too_big", raw(b"labels: [{name: a}]\n" + b"#" * (1024 * 1024)), ("(file): larger than 1024 KB",)),
    Case("deep_for_yaml", raw("labels: " + "[" * 100_000 + "]" * 100_000), ("(yaml): nested too deeply",)),
    Case("deep", raw("labels: [{name: a}]\nx: " + "[" * 40 + "]" * 40), ("x" + "[0]" * 32 + ": nested deeper",)),
    Case("recursive_alias", raw("labels: [{name: a}]\nx: &x [1, *x]\n"), ("x[1]: an alias refers",)),
    Case("alias_bomb", raw(alias_bomb(6)), ("(yaml): more than 100000 values",)),
    Case("bad_date", raw("labels: [{name: a}]\nnode: 2020-13-45\n"), ("(yaml): cannot read a value",)),
    Case("huge_int", raw("labels: [{name: a}]\nnode: " + "1" * 5000 + "\n"), ("(yaml): cannot read a value",)),
    Case("yaml_syntax", raw("labels:\n  - name: [unclosed\n"), ("(yaml): line",)),
    Case("not_a_mapping", raw("- a\n- b\n"), ("(top level): must be a mapping",)),
    Case("key_not_text", raw("labels: [{name: a}]\naudio: {1: x}\n"), ("audio: key 1 must be text",)),
    Case("template_two_fields", yaml_bytes(prompt_template="{0} {1}"), ("prompt_template: must contain '{}'",)),
    Case("template_named", yaml_bytes(prompt_template="a {name}"), ("prompt_template: must contain '{}'",)),
    Case("template_lone_brace", yaml_bytes(prompt_template="{"), ("prompt_template: must contain '{}'",)),
    Case("template_stray_close", yaml_bytes(prompt_template="{}}"), ("prompt_template: must contain '{}'",)),
    Case("template_spec", yaml_bytes(prompt_template="{:d}"), ("prompt_template: must contain '{}'",)),
    Case("duplicate_ids", yaml_bytes(labels=[{"name": "a b"}, {"name": "c"}, {"name": "A-B"}]),
         ("labels[2].name: 'A-B' and 'a b' have the same id 'a_b'",)),
    Case("background_is_a_label", yaml_bytes(background=["silence", "Dog Barking"]), ("background[1]: ",)),
    Case("password_file_missing", yaml_bytes(mqtt=mqtt(username="u", password_file=lambda f: str(f / "nope"))),
         ("mqtt.password_file: cannot read ",)),
    Case("password_file_not_utf8", yaml_bytes(mqtt=mqtt(username="u", password_file=lambda f: str(f / "pw-latin1"))),
         ("mqtt.password_file: ", )),
    Case("password_file_is_a_folder", yaml_bytes(mqtt=mqtt(username="u", password_file=lambda f: str(f))),
         ("mqtt.password_file: ",)),
    Case("password_env_unset", yaml_bytes(mqtt=mqtt(username="u", password_env=UNSET_ENV)),
         (f"mqtt.password_env: environment variable {UNSET_ENV} is not set",)),
    Case("ca_missing", yaml_bytes(mqtt=mqtt(tls=True, ca_certs=lambda f: str(f / "nope.pem"))),
         ("mqtt.ca_certs: cannot read ",)),
    Case("ca_not_pem", yaml_bytes(mqtt=mqtt(tls=True, ca_certs=lambda f: str(f / "pw-latin1"))),
         ("mqtt.ca_certs: cannot load CA certificates",)),
    Case("ca_without_tls", yaml_bytes(mqtt=mqtt(ca_certs="/etc/ssl/certs/ca-certificates.crt")),
         ("mqtt.ca_certs: is set but mqtt.tls is false",)),
    # Root may write anywhere, but nobody can create a folder inside a file.
    Case("clips_folder_under_a_file", yaml_bytes(clips=lambda f: {"enabled": True, "folder": str(f / "a-file" / "c")}),
         ("clips.folder: cannot create ",)),
    Case("clips_folder_is_a_file", yaml_bytes(clips=lambda f: {"enabled": True, "folder": str(f / "a-file")}),
         ("clips.folder: ",)),
    Case("model_folder_missing", yaml_bytes(model=lambda f: str(f / "no-model")), ("model: no such folder",)),
    Case("model_is_a_file", yaml_bytes(model=lambda f: str(f / "a-file")), ("model: ",)),
    Case("model_without_config_json", yaml_bytes(model=lambda f: str(f)), ("model: ",)),
    Case("every_problem_at_once",
         yaml_bytes(labels=[{"name": "a"}, {"name": "A", "threshold": 2}], prompt_template="{x}",
                    mqtt=mqtt(qos=7, username="u", password_env=UNSET_ENV), audio={"window_secs": 5}),
         ("labels[1].threshold: must be between 0 and 1", "prompt_template: ", "mqtt.qos: must be between 0 and 2",
          "mqtt.password_env: ", "audio.window_secs: unknown key")),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the configs point at: a model folder that passes the check (but cannot load), a file, a latin-1 file."""
    root = tmp_path_factory.mktemp("named")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{}")  # passes the check; loading it would fail with exit 1
    (root / "a-file").write_text("not a folder")
    (root / "pw-latin1").write_bytes(b"caf\xe9\n")
    return root


def run_command(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {UNSET_ENV, "SOUND_MONITOR_CONFIG"}}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


def test_every_bad_config_is_refused_alike_by_check_config_run_and_replay(folder: Path, tmp_path: Path) -> None:
    jobs: list[tuple[Case, str, list[str]]] = []
    for i, case in enumerate(CASES):
        path = tmp_path / f"{case.name}.yaml"
        path.write_bytes(case.content(folder))
        # run and replay load the config the same way (cli.load); each case goes through one of them, in turn.
        runner = (["run", "--config", str(path)] if i % 2 == 0
                  else ["replay", str(tmp_path / "never-read.wav"), "--config", str(path)])
        jobs += [(case, "check-config", ["check-config", str(path)]), (case, "run/replay", runner)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: run_command(job[2]), jobs))
    lines_by_case: dict[str, dict[str, list[str]]] = {}
    failures: list[str] = []  # every case is checked before failing, so one run shows all that go wrong
    for (case, command, _), proc in zip(jobs, results, strict=True):
        head, *problems = proc.stderr.splitlines() or [""]
        lines_by_case.setdefault(case.name, {})[command] = problems
        missing = [e for e in case.expected if not any(p.startswith(f"  {e}") for p in problems)]
        if ("Traceback" in proc.stderr or proc.returncode != 2 or not head.endswith(": invalid configuration:")
                or not problems or not all(PROBLEM_LINE.match(p) for p in problems) or missing):
            failures.append(f"{case.name} / {command}: rc {proc.returncode}, missing {missing}:\n{proc.stderr[-900:]}")
    for name, by_command in lines_by_case.items():
        if by_command["run/replay"] != by_command["check-config"]:
            failures.append(f"{name}: run/replay and check-config disagree: {by_command}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures)


def test_a_config_whose_named_files_are_all_fine_passes(folder: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("SOUND_MONITOR_TEST_PW", "x")
    path = tmp_path / "good.yaml"
    path.write_bytes(yaml_bytes(
        prompt_template="{{braces}} {0}",
        mqtt=mqtt(username="u", password_file=str(tmp_path / "pw"), tls=True,
                  ca_certs="/etc/ssl/certs/ca-certificates.crt"),
        clips={"enabled": True, "folder": str(tmp_path / "new" / "clips")},
    )(folder))
    proc = run_command(["check-config", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "new").exists()  # checked, not created
    cfg = load_config(path, check_files=True)
    assert cfg.mqtt is not None and cfg.mqtt.resolved_password() == "s3cret"


def test_the_command_line_model_is_checked_too(folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(yaml_bytes()(folder))
    proc = run_command(["replay", str(tmp_path / "x.wav"), "--config", str(path), "--model", str(tmp_path / "gone")])
    assert proc.returncode == 2 and "  model: no such folder" in proc.stderr, proc.stderr


def test_in_memory_configs_are_not_checked_against_the_disk() -> None:
    """Tests and ``classify`` validate the shape only: a password variable of the service is not needed there."""
    cfg = parse_config({"labels": [{"name": "a"}], "mqtt": {"host": "h", "username": "u", "password_env": UNSET_ENV}})
    assert cfg.mqtt is not None
    with pytest.raises(ConfigError, match=f"mqtt.password_env: environment variable {UNSET_ENV} is not set"):
        cfg.mqtt.resolved_password()
