"""The PostgreSQL image built from Debian's packages honours the official image's contract."""

from __future__ import annotations

import pytest
from imagetools import (
    PG_PASSWORD,
    PG_USER,
    docker,
    fsgroup_volume,
    logs,
    psql,
    start_postgres,
    wait_exit,
    wait_postgres_ready,
)

pytestmark = pytest.mark.images

INIT_MESSAGE = "initialising a new database cluster"
SKIP_MESSAGE = "already holds a database"


def test_refuses_to_start_without_password(postgres_image, resources):
    vol = resources.volume("nopw")
    cname = start_postgres(resources, postgres_image, "nopw", vol, password=None)
    assert wait_exit(cname, timeout=60) != 0
    out = logs(cname)
    assert "no superuser password is given" in out, out
    assert "POSTGRES_PASSWORD" in out, out
    # Nothing was initialised: a later start with a password still initialises.
    proc = docker(
        "run",
        "--rm",
        "-v",
        f"{vol}:/data",
        "--entrypoint",
        "ls",
        postgres_image,
        "-A",
        "/data/pgdata",
        check=False,
    )
    assert "PG_VERSION" not in proc.stdout


def test_initialises_once_and_keeps_data_across_restarts(postgres_image, resources):
    vol = resources.volume("data")
    first = start_postgres(resources, postgres_image, "first", vol)
    wait_postgres_ready(first)
    assert logs(first).count(INIT_MESSAGE) == 1
    psql(first, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives restarts');")
    docker("stop", first)
    resources.remove_container(first)

    # Same volume, new container, even a different password: no second initialisation.
    second = start_postgres(resources, postgres_image, "second", vol, password="another-password")
    wait_postgres_ready(second)
    out = logs(second)
    assert INIT_MESSAGE not in out, out
    assert SKIP_MESSAGE in out, out
    assert psql(second, "SELECT v FROM kept;").stdout.strip() == "survives restarts"

    # Restarting the same container keeps the data too.
    docker("restart", second)
    wait_postgres_ready(second)
    assert psql(second, "SELECT v FROM kept;").stdout.strip() == "survives restarts"
    assert logs(second).count(INIT_MESSAGE) == 0


def test_psql_select_version_as_in_the_guide(postgres_image, resources):
    cname = start_postgres(resources, postgres_image, "version", resources.volume("version"))
    wait_postgres_ready(cname)
    out = docker("exec", cname, "psql", "-U", PG_USER, "-c", "SELECT version();").stdout
    assert "PostgreSQL 17" in out, out
    # POSTGRES_DB defaults to POSTGRES_USER: the database exists.
    assert psql(cname, "SELECT current_database();").stdout.strip() == PG_USER


def test_server_runs_as_postgres_and_listens_on_all_addresses(postgres_image, resources):
    cname = start_postgres(resources, postgres_image, "uid", resources.volume("uid"))
    wait_postgres_ready(cname)
    status = docker("exec", cname, "cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["999"] * 4, uid_line
    assert psql(cname, "SHOW listen_addresses;").stdout.strip() == "*"
    assert psql(cname, "SHOW port;").stdout.strip() == "5432"
    hba = docker("exec", cname, "cat", "/var/lib/postgresql/data/pgdata/pg_hba.conf").stdout
    assert "host all all all scram-sha-256" in hba


def test_tcp_connections_need_the_password(postgres_image, resources):
    cname = start_postgres(resources, postgres_image, "auth", resources.volume("auth"))
    wait_postgres_ready(cname)
    ok = psql(cname, "SELECT 1;", host="127.0.0.1", env={"PGPASSWORD": PG_PASSWORD})
    assert ok.stdout.strip() == "1"
    bad = psql(cname, "SELECT 1;", host="127.0.0.1", env={"PGPASSWORD": "wrong"}, check=False)
    assert bad.returncode != 0
    assert "password authentication failed" in bad.stderr, bad.stderr


def test_starts_directly_as_uid_999_with_fsgroup(postgres_image, resources):
    """As a pod with runAsUser: 999, runAsGroup: 999, fsGroup: 999 and PGDATA in a subdirectory."""
    vol = fsgroup_volume(resources, "nonroot", postgres_image)
    cname = start_postgres(
        resources, postgres_image, "nonroot", vol, "--user", "999:999", "--group-add", "999"
    )
    wait_postgres_ready(cname)
    assert INIT_MESSAGE in logs(cname)
    out = docker("exec", cname, "psql", "-U", PG_USER, "-c", "SELECT version();").stdout
    assert "PostgreSQL 17" in out
