"""Helpers of the image tests: run Docker, poll with deadlines, talk HTTP and psql.

Every container, volume and network made by the tests is named ``bgo-images-<run id>-...`` and
removed at the end of its test; on failure the containers' logs are printed first.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
RUN_ID = uuid.uuid4().hex[:8]

# Test-only credentials for throwaway containers.
PG_USER = "backstage"
PG_PASSWORD = "test-only-postgres-password"
BACKEND_SECRET = "dGVzdC1vbmx5LWJhY2tlbmQtc2VjcmV0"


def run(
    cmd: list[str], *, check: bool = True, timeout: float = 120, **kw
) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and fail with both streams when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return run(["docker", *args], check=check, timeout=timeout)


def name(suffix: str) -> str:
    return f"bgo-images-{RUN_ID}-{suffix}"


def build(script: str, *args: str, timeout: float = 3000) -> str:
    """Run a build script; it prints the image name last on stdout."""
    start = time.monotonic()
    proc = subprocess.run(
        [str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(f"{script} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    image = proc.stdout.strip().splitlines()[-1]
    print(f"{script}: {image} in {time.monotonic() - start:.1f} s")
    return image


@dataclass
class Resources:
    """Containers, volumes and networks made by a test, removed at the end."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def volume(self, suffix: str) -> str:
        vol = name(suffix)
        docker("volume", "create", vol)
        self.volumes.append(vol)
        return vol

    def network(self, suffix: str) -> str:
        net = name(suffix)
        docker("network", "create", net)
        self.networks.append(net)
        return net

    def run_container(self, suffix: str, image: str, *args: str, cmd: tuple[str, ...] = ()) -> str:
        cname = name(suffix)
        self.containers.append(cname)
        docker("run", "-d", "--name", cname, *args, image, *cmd)
        return cname

    def remove_container(self, cname: str) -> None:
        docker("rm", "-f", "-v", cname, check=False)
        if cname in self.containers:
            self.containers.remove(cname)

    def dump_logs(self) -> None:
        for cname in self.containers:
            proc = docker("logs", "--tail", "80", cname, check=False)
            print(f"--- logs of {cname}\n{proc.stdout}{proc.stderr}")

    def cleanup(self) -> None:
        for cname in list(self.containers):
            self.remove_container(cname)
        for vol in self.volumes:
            docker("volume", "rm", "-f", vol, check=False)
        for net in self.networks:
            docker("network", "rm", net, check=False)


def fsgroup_volume(resources, suffix: str, postgres_image: str) -> str:
    """A fresh volume owned by root with group 999 and the setgid bit, as a pod's
    fsGroup: 999 leaves it."""
    vol = resources.volume(suffix)
    docker("run", "--rm", "-v", f"{vol}:/data", "--entrypoint", "sh", postgres_image,
           "-c", "chown root:999 /data && chmod 2775 /data")
    return vol


def logs(cname: str) -> str:
    proc = docker("logs", cname, check=False)
    return proc.stdout + proc.stderr


def container_state(cname: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", cname).stdout)


def wait_for(what: str, probe, timeout: float, interval: float = 0.5):
    """Poll probe() until it returns a truthy value; fail with what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def wait_exit(cname: str, timeout: float) -> int:
    state = wait_for(
        f"{cname} to exit",
        lambda: (s := container_state(cname))["Status"] == "exited" and s,
        timeout,
    )
    return int(state["ExitCode"])


def psql(
    cname: str,
    sql: str,
    *,
    db: str = PG_USER,
    check: bool = True,
    env: dict | None = None,
    host: str | None = None,
    user: str = PG_USER,
) -> subprocess.CompletedProcess:
    args = ["exec"]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    args += [cname, "psql", "-v", "ON_ERROR_STOP=1", "-At", "-U", user, "-d", db]
    if host:
        args += ["-h", host]
    return docker(*args, "-c", sql, check=check)


def start_postgres(
    res: Resources,
    image: str,
    suffix: str,
    volume: str,
    *extra: str,
    password: str | None = PG_PASSWORD,
    network: str | None = None,
) -> str:
    args = [
        "-e",
        f"POSTGRES_USER={PG_USER}",
        "-e",
        "PGDATA=/var/lib/postgresql/data/pgdata",
        "-v",
        f"{volume}:/var/lib/postgresql/data",
    ]
    if password is not None:
        args += ["-e", f"POSTGRES_PASSWORD={password}"]
    if network:
        args += ["--network", network, "--network-alias", "postgres"]
    return res.run_container(suffix, image, *args, *extra)


def wait_postgres_ready(cname: str, timeout: float = 90) -> None:
    """Ready means the final server accepts TCP connections (the init server has no TCP)."""

    def probe():
        state = container_state(cname)
        if state["Status"] != "running":
            pytest.fail(f"{cname} is {state['Status']} (exit {state['ExitCode']}):\n{logs(cname)}")
        proc = docker(
            "exec", cname, "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", PG_USER, check=False
        )
        return proc.returncode == 0

    wait_for(f"PostgreSQL in {cname} to accept TCP connections", probe, timeout)


def published_url(cname: str, port: int) -> str:
    out = docker("port", cname, f"{port}/tcp").stdout.split()
    if not out:
        pytest.fail(f"{cname} publishes no port {port}")
    hostport = out[0]
    return f"http://{hostport}"


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str

    def json(self):
        return json.loads(self.body)


def http_get(url: str, headers: dict | None = None, timeout: float = 10) -> Response:
    req = urllib.request.Request(url, headers=headers or {})
    # Loopback only: never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return Response(err.code, err.read(), err.headers.get("Content-Type", ""))
