"""The Backstage image runs the real backend against our PostgreSQL image."""

from __future__ import annotations

import time

import pytest
from imagetools import (
    BACKEND_SECRET,
    PG_PASSWORD,
    PG_USER,
    Resources,
    fsgroup_volume,
    container_state,
    docker,
    http_get,
    logs,
    psql,
    published_url,
    start_postgres,
    wait_exit,
    wait_for,
    wait_postgres_ready,
)

pytestmark = pytest.mark.images

READINESS = "/.backstage/health/v1/readiness"
LIVENESS = "/.backstage/health/v1/liveness"
K8S_CONFIG = "/app/config/app-config.k8s.yaml"
CMD = (
    "node",
    "packages/backend",
    "--config",
    "app-config.yaml",
    "--config",
    "app-config.production.yaml",
)

LAB_CONFIG = """\
auth:
  providers:
    guest:
      dangerouslyAllowOutsideDevelopment: true
"""


def start_backstage(
    res: Resources, image: str, network: str, suffix: str, *extra: str, cmd: tuple[str, ...] = ()
) -> tuple[str, str, float]:
    """Start the backend; return its name, its base URL and the start time."""
    started = time.monotonic()
    cname = res.run_container(
        suffix,
        image,
        "--network",
        network,
        "-p",
        "127.0.0.1::7007",
        "-e",
        "POSTGRES_HOST=postgres",
        "-e",
        "POSTGRES_PORT=5432",
        "-e",
        f"POSTGRES_USER={PG_USER}",
        "-e",
        f"POSTGRES_PASSWORD={PG_PASSWORD}",
        "-e",
        f"BACKEND_SECRET={BACKEND_SECRET}",
        *extra,
        cmd=cmd,
    )
    return cname, published_url(cname, 7007), started


def wait_ready(cname: str, url: str, timeout: float = 180) -> None:
    def probe():
        state = container_state(cname)
        if state["Status"] != "running":
            pytest.fail(f"{cname} is {state['Status']} (exit {state['ExitCode']}):\n{logs(cname)}")
        try:
            return http_get(url + READINESS, timeout=5).status == 200
        except OSError:
            return False

    wait_for(f"Backstage in {cname} to be ready", probe, timeout)


@pytest.fixture(scope="module")
def backend(backstage_image, postgres_image):
    """PostgreSQL and the backend with the image's default command (no guest sign-in), shared
    by the tests of this module; logs are printed when the setup fails."""
    res = Resources()
    try:
        net = res.network("net")
        pg = start_postgres(res, postgres_image, "pg", res.volume("pg"), network=net)
        wait_postgres_ready(pg)
        cname, url, started = start_backstage(res, backstage_image, net, "backstage")
        try:
            wait_ready(cname, url)
        except BaseException:
            res.dump_logs()
            raise
        print(f"Backstage ready {time.monotonic() - started:.1f} s after docker run")
        yield {"pg": pg, "backstage": cname, "url": url, "net": net}
    finally:
        res.cleanup()


def test_health_routes_answer_json(backend):
    for path in (READINESS, LIVENESS):
        resp = http_get(backend["url"] + path)
        assert resp.status == 200, (path, resp)
        assert resp.content_type.startswith("application/json"), (path, resp.content_type)
        assert resp.json() == {"status": "ok"}


def test_healthcheck_answers_200(backend):
    resp = http_get(backend["url"] + "/healthcheck")
    assert resp.status == 200, resp
    assert resp.json() == {"status": "ok"}


def test_catalog_requires_a_token(backend):
    resp = http_get(backend["url"] + "/api/catalog/entities")
    assert resp.status == 401, resp
    assert resp.json()["error"]["name"] == "AuthenticationError"


def test_plugin_databases_are_created_in_postgres(backend):
    names = set(psql(backend["pg"], "SELECT datname FROM pg_database;").stdout.split())
    assert {"backstage_plugin_catalog", "backstage_plugin_auth"} <= names, names
    # The catalog really lives there: its tables are filled from the example locations.
    tables = psql(
        backend["pg"], "SELECT count(*) FROM refresh_state;", db="backstage_plugin_catalog"
    ).stdout.strip()
    assert int(tables) >= 0


def test_runs_as_node_uid_1000_in_app(backend):
    status = docker("exec", backend["backstage"], "cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["1000"] * 4, uid_line
    inspect = docker(
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{.Config.WorkingDir}}",
        "backstage:1.0.0",
    ).stdout
    assert inspect.strip() == (
        '["node","packages/backend","--config","app-config.yaml","--config",'
        '"app-config.production.yaml"] /app'
    )


def test_guest_sign_in_is_off_by_default(backend):
    resp = http_get(
        backend["url"] + "/api/auth/guest/refresh", headers={"X-Requested-With": "XMLHttpRequest"}
    )
    assert resp.status == 404, resp


def test_guest_sign_in_with_an_extra_config_file(
    backstage_image, postgres_image, resources, tmp_path
):
    """As the lab overlay does: a config file mounted at /app/config and one more --config."""
    config = tmp_path / "app-config.k8s.yaml"
    config.write_text(LAB_CONFIG)
    config.chmod(0o644)
    net = resources.network("labnet")
    pg = start_postgres(resources, postgres_image, "labpg", resources.volume("labpg"), network=net)
    wait_postgres_ready(pg)
    cname, url, _ = start_backstage(
        resources,
        backstage_image,
        net,
        "lab",
        "-v",
        f"{config}:{K8S_CONFIG}:ro",
        cmd=(*CMD, "--config", K8S_CONFIG),
    )
    wait_ready(cname, url)
    resp = http_get(url + "/api/auth/guest/refresh", headers={"X-Requested-With": "XMLHttpRequest"})
    assert resp.status == 200, resp
    identity = resp.json()["backstageIdentity"]
    assert identity["token"]
    # With that token the catalog answers.
    entities = http_get(
        url + "/api/catalog/entities", headers={"Authorization": f"Bearer {identity['token']}"}
    )
    assert entities.status == 200, entities


def test_both_run_under_a_restricted_security_context(backstage_image, postgres_image, resources):
    """As pods under the restricted Pod Security Standard with a read-only root file system:
    PostgreSQL as 999:999 with fsGroup 999 and PGDATA in a subdirectory, Backstage as 1000;
    all capabilities dropped, no privilege escalation, /tmp (and PostgreSQL's socket
    directory) as emptyDir-like tmpfs."""
    restricted = (
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/tmp",
    )
    net = resources.network("rnet")
    vol = fsgroup_volume(resources, "rpg", postgres_image)
    pg = resources.run_container(
        "rpg",
        postgres_image,
        "--network",
        net,
        "--network-alias",
        "postgres",
        "--user",
        "999:999",
        "--group-add",
        "999",
        *restricted,
        "--tmpfs",
        "/var/run/postgresql:uid=999,gid=999,mode=3777",
        "-v",
        f"{vol}:/var/lib/postgresql/data",
        "-e",
        "PGDATA=/var/lib/postgresql/data/pgdata",
        "-e",
        f"POSTGRES_USER={PG_USER}",
        "-e",
        f"POSTGRES_PASSWORD={PG_PASSWORD}",
    )
    wait_postgres_ready(pg)
    cname, url, _ = start_backstage(
        resources, backstage_image, net, "rbackstage", "--user", "1000:1000", *restricted
    )
    wait_ready(cname, url)
    assert http_get(url + "/healthcheck").status == 200
    assert http_get(url + "/api/catalog/entities").status == 401


def test_missing_backend_secret_stops_the_backend(backstage_image, backend, resources):
    """BACKEND_SECRET is required: without it the backend names the config value and exits."""
    cname = resources.run_container(
        "nosecret",
        backstage_image,
        "--network",
        backend["net"],
        "-e",
        "POSTGRES_HOST=postgres",
        "-e",
        "POSTGRES_PORT=5432",
        "-e",
        f"POSTGRES_USER={PG_USER}",
        "-e",
        f"POSTGRES_PASSWORD={PG_PASSWORD}",
    )
    assert wait_exit(cname, timeout=120) != 0
    out = logs(cname)
    assert "Missing required config value at 'backend.auth.externalAccess[0].options.secret'" in out
