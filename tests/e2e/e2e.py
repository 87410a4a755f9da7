"""Helpers of the end-to-end tier: a scratch copy of the repository, commands with their
output kept as artifacts, HTTP(S) clients, a test CA, and PostgreSQL through kubectl exec."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", REPO / "artifacts" / "e2e"))
NAMESPACE = "backstage"


def copy_repository(dst: Path) -> Path:
    """The repository's files (committed or not, minus ignored ones) in dst, so that a test
    can make a new user's keys, rotate values and re-apply without touching the real tree."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.exists():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dst


MEASUREMENTS: list[str] = []


def measured(line: str) -> None:
    """A figure for the docs: printed in the terminal summary of the run (tests/e2e/conftest.py)
    and kept in artifacts/e2e/measurements.log."""
    MEASUREMENTS.append(line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with (ARTIFACTS / "measurements.log").open("a") as out:
        out.write(f"{stamp} {line}\n")


def run_logged(cmd: list[str], name: str, **kwargs) -> tuple[int, float, Path]:
    """Run cmd, echo its output as it comes (progress for a person) and keep it in
    artifacts/e2e/<name>.log. Returns exit code, seconds and the log path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"{name}.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **kwargs)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            sys.stderr.write(f"[{name}] {line}")
        rc = proc.wait()
    return rc, time.monotonic() - start, log


@dataclass
class Response:
    status: int | None
    body: str
    seconds: float
    error: str = ""

    def json(self):
        return json.loads(self.body)


def http_get(port: int, path: str, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
             server_name: str | None = None, timeout: float = 10) -> Response:
    """GET http(s)://127.0.0.1:port/path; with tls, the certificate is checked for server_name
    (sent as SNI and Host), as a browser resolving server_name to this address would."""
    start = time.monotonic()
    try:
        if tls:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
            raw = socket.create_connection((host, port), timeout=timeout)
            conn.sock = tls.wrap_socket(raw, server_hostname=server_name)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("GET", path, headers={"Host": server_name or host})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        conn.close()
        return Response(resp.status, body, time.monotonic() - start)
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        return Response(None, "", time.monotonic() - start, f"{type(e).__name__}: {e}")


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    """Poll predicate until it returns a truthy value; fail naming what was waited for."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def make_test_ca(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for host signed by it: (ca.crt, tls.crt, tls.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backstage-gitops e2e test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def psql(cluster, sql: str, database: str = "postgres") -> str:
    """Run SQL in the postgres pod as the guide does (kubectl exec ... psql -U backstage)."""
    return cluster.kubectl(
        f"--namespace={NAMESPACE}", "exec", "deployment/postgres", "-c", "postgres", "--",
        "psql", "-U", "backstage", "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
    )


def rollout(cluster, deployment: str, timeout: str = "600s") -> None:
    cluster.kubectl(f"--namespace={NAMESPACE}", "rollout", "status", f"deployment/{deployment}",
                    f"--timeout={timeout}")


def get_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(f"--namespace={NAMESPACE}", "get", *args, "-o", "json"))


@contextlib.contextmanager
def port_forward(cluster, target: str, remote_port: int, namespace: str = NAMESPACE):
    """kubectl port-forward target to a free local port; yields the port once it accepts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig_path}",
         f"--namespace={namespace}", "port-forward", target, f"{port}:{remote_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def accepting():
            if proc.poll() is not None:
                raise AssertionError(f"port-forward {target} exited: {proc.stdout.read()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(accepting, 30, f"port-forward to {target}", interval=0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
