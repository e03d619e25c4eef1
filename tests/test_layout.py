"""Layout rules of the test suite: shared code lives in ``support/``, so no file imports a test module."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imported_test_modules(source: str) -> list[str]:
    """The test modules (``test_*``) that ``source`` imports, as written: ``import``, ``from ... import``, relative."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if _is_test_module(module):
                found.append(module)
            elif node.level or module.split(".")[-1] == "tests":  # from . import test_x / from tests import test_x
                found += [alias.name for alias in node.names if _is_test_module(alias.name)]
    return found


def test_the_checker_finds_every_form_of_test_module_import() -> None:
    bad = """
import test_clips
import tests.test_replay as replay
from test_homeassistant import make_config
from .test_live import write_config
from . import test_plot
from tests import test_metrics
"""
    assert imported_test_modules(bad) == ["test_clips", "tests.test_replay", "test_homeassistant", "test_live",
                                        "test_plot", "test_metrics"]
    ok = "import support.audio\nfrom support.config import make_config\nfrom monitor.testing import randommodel\n"
    assert imported_test_modules(ok) == []


def test_no_file_in_tests_imports_a_test_module() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert TESTS / "conftest.py" in files and TESTS / "support" / "config.py" in files
    offenders = {str(f.relative_to(TESTS)): found for f in files if (found := imported_test_modules(f.read_text()))}
    assert offenders == {}, "move what they share into tests/support/"
