"""``disgorge serve --tls-cert --tls-key``: HTTPS from the server itself, and what it refuses.

A real self-signed certificate (``cryptography``), the real console script in its own
process on 127.0.0.1, and a client that trusts that certificate and nothing else.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import DISGORGE, cli, cli_env, free_port
from disgorge import Workspace


def self_signed(folder: Path, name: str, *, password: bytes | None = None) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    Workspace.init(tmp_path / "ws").close()
    return tmp_path / "ws"


def test_serve_answers_https_with_the_given_certificate(tmp_path: Path, ws_root: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    port = free_port()
    proc = subprocess.Popen(
        [DISGORGE, "serve", "--port", str(port), "--tls-cert", cert, "--tls-key", key, "-w", ws_root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        answer = None
        give_up = time.monotonic() + 60
        while answer is None and time.monotonic() < give_up and proc.poll() is None:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusting, timeout=10)
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer is not None, f"the server did not answer; it exited with {proc.poll()}"
        assert answer.status_code == 200 and answer.json()["ok"] is True
        # the same API, authenticated as before, over TLS
        unauthenticated = httpx.get(f"https://127.0.0.1:{port}/v1/status", verify=trusting, timeout=10)
        assert unauthenticated.status_code == 401
        # a client that does not trust this certificate is refused by its own TLS check
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=10)
        # and plain HTTP gets no API on the TLS port
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=60)
    assert f"https://127.0.0.1:{port}" in stderr
    assert "warning: serving plain HTTP" not in stderr


def test_a_certificate_without_its_key_is_refused(tmp_path: Path, ws_root: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    for args, needs in ((["--tls-cert", cert], "--tls-key"), (["--tls-key", key], "--tls-cert")):
        proc = cli("serve", "--port", str(free_port()), *args, "-w", ws_root, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert f"needs {needs} too" in proc.stderr


def test_keys_that_cannot_serve_are_refused_before_starting(tmp_path: Path, ws_root: Path) -> None:
    cert, _ = self_signed(tmp_path, "server")
    _, other_key = self_signed(tmp_path, "other")
    _, locked_key = self_signed(tmp_path, "locked", password=b"secret")
    cases = [
        (other_key, "is not the private key of the certificate"),
        (locked_key, "is encrypted"),
        (cert, "cannot be loaded as a PEM certificate and its private key"),
        (tmp_path / "missing.key", "no such file"),
    ]
    for key, message in cases:
        proc = cli("serve", "--port", str(free_port()), "--tls-cert", cert, "--tls-key", key, "-w", ws_root)
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr, proc.stderr
        assert "serving" not in proc.stderr


def test_plain_http_on_a_network_address_warns(tmp_path: Path) -> None:
    # no workspace there: the command stops after the warning, without binding anything
    proc = cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), "-w", tmp_path / "none")
    assert proc.returncode == 1
    assert "warning: serving plain HTTP on 0.0.0.0" in proc.stderr
    assert "--tls-cert" in proc.stderr
    quiet = cli("serve", "--host", "127.0.0.1", "--port", str(free_port()), "-w", tmp_path / "none")
    assert quiet.returncode == 1 and "warning" not in quiet.stderr
