"""Test certificates made with the ``openssl`` command: a CA and a server certificate for 127.0.0.1/localhost."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificates", "make_ca", "make_certificates"]


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    assert exe, "the openssl command is needed to make test certificates"
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA in ``folder``: ``(<name>.pem, <name>.key)``."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=test {name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


@dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate it signed (for 127.0.0.1 and localhost), all PEM files."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A CA and a server certificate signed by it, with subjectAltName IP:127.0.0.1 and DNS:localhost."""
    ca, ca_key = make_ca(folder)
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca.name, "-CAkey", ca_key.name, "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=folder)
    return Certificates(ca, folder / "server.pem", folder / "server.key")
