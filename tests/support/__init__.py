"""Test support code, one module per job; test modules import from here, never from each other.

``wait`` (polling), ``audio`` (synthetic sound), ``mqtt`` (a recording subscriber), ``broker`` (mosquitto),
``pulse`` (PulseAudio), ``procs`` (the CLI in a subprocess), ``config`` (the one config builder), ``runner``
(an in-process monitor on a thread) and ``scorers`` (scripted scorers). pytest puts ``tests/`` on ``sys.path``
(``tests/`` itself has no ``__init__.py``), so ``from support.audio import tone`` works from any test module.
The fixtures that build brokers and PulseAudio live in ``conftest.py``.
"""
