#!/usr/bin/env python3
"""Benchmark krm-secrets: render overhead and sealing throughput, as medians.

usage: scripts/bench-secrets.py [--runs N] [--keys N] [--seal-runs N] [--target DIR]
       (after scripts/bootstrap.sh; prints a Markdown table for docs/secrets.md)

Render: `kustomize build --enable-alpha-plugins --enable-exec <target>` with the lab Secrets
  1. decrypted by krm-secrets (the repository as it is),
  2. as kustomize's built-in plaintext secretGenerator (same values, no decryption),
  3. decrypted by KSOPS (built from the Go module proxy into the cache) when it can be built,
  4. decrypted by the real `sops` binary in a tiny exec generator (a Go SOPS stand-in).
  Each variant runs in a scratch copy of the repository, never in the work tree.
Sealing: N keys sealed by `krm-secrets seal` (one process, one Secret), against
  `kubeseal --raw` once per key (its loop mode) and `kubeseal` on the same Secret (its batch mode).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backstage-gitops"
GOBIN = CACHE / "go" / "bin"
KUBESEAL = ("github.com/bitnami-labs/sealed-secrets/cmd/kubeseal", "v0.36.6")
KSOPS = ("github.com/viaduct-ai/kustomize-sops", "latest")
FLAGS = ["--enable-alpha-plugins", "--enable-exec"]
LAB_SECRETS = "overlays/lab/secrets"


def log(msg: str) -> None:
    print(f"bench-secrets: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> None:
    log(f"error: {msg}")
    sys.exit(1)


def venv_bin() -> Path:
    for cand in (Path(sys.executable).parent, REPO / ".tools" / "venv" / "bin"):
        if (cand / "krm-secrets").exists():
            return cand
    die("krm-secrets is not installed: run scripts/bootstrap.sh")
    raise AssertionError


def kustomize() -> str:
    for cand in (
        os.environ.get("KUSTOMIZE"),
        str(REPO / ".tools" / "bin" / "kustomize"),
        shutil.which("kustomize"),
    ):
        if cand and os.access(cand, os.X_OK):
            return cand
    die("kustomize not found: run scripts/bootstrap.sh")
    raise AssertionError


def go_tool(module: str, version: str, name: str) -> str | None:
    exe = GOBIN / name
    if exe.exists():
        return str(exe)
    if not shutil.which("go"):
        log(f"{name}: Go is not installed, skipped")
        return None
    log(f"building {name} from the Go module proxy ({module}@{version})")
    start = time.perf_counter()
    proc = subprocess.run(
        ["go", "install", f"{module}@{version}"],
        env={**os.environ, "GOBIN": str(GOBIN)},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not exe.exists():
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        log(f"{name}: could not be built: {reason}")
        return None
    log(f"built {name} in {time.perf_counter() - start:.0f} s")
    return str(exe)


def median_of(runs: int, fn) -> float:
    fn()  # warm-up: file cache, Python bytecode
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, **kw)
    if proc.returncode != 0:
        die(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    return proc


# --- render -------------------------------------------------------------------------------------


def scratch_repo(dest: Path) -> None:
    for item in (
        "base",
        "components",
        "overlays",
        "kustomization.yaml",
        ".sops.yaml",
        "tests/keys",
    ):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item)
        elif src.exists():
            (dest / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / item)


def lab_values(env: dict) -> dict[str, dict[str, bytes]]:
    """The lab Secrets' values, decrypted (test-only key) to build the comparison variants."""
    import yaml

    out = {}
    for f in sorted((REPO / LAB_SECRETS).glob("*.sops.yaml")):
        doc = yaml.safe_load(
            run([str(venv_bin() / "krm-secrets"), "decrypt", str(f)], env=env).stdout
        )
        out[doc["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in doc["data"].items()}
    return out


def variant_plain(secrets_dir: Path, values: dict) -> None:
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "namespace: backstage",
        "secretGenerator:",
    ]
    for name, data in values.items():
        lines += [f"  - name: {name}", "    files:"]
        for k, v in data.items():
            (secrets_dir / f"{name}.{k}").write_bytes(v)
            lines.append(f"      - {k}={name}.{k}")
    (secrets_dir / "kustomization.yaml").write_text("\n".join(lines) + "\n")


def variant_exec(secrets_dir: Path, path: str, api: str, kind: str, files_key: str) -> None:
    files = sorted(f.name for f in secrets_dir.glob("*.sops.yaml"))
    spec = f"  {files_key}:\n" + "".join(f"    - {f}\n" for f in files)
    (secrets_dir / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ngenerators:\n  - |-\n"
        f"    apiVersion: {api}\n    kind: {kind}\n    metadata:\n      name: bench\n"
        "      annotations:\n"
        f"        config.kubernetes.io/function: |\n          exec:\n            path: {path}\n"
        + "\n".join("  " + line for line in spec.rstrip("\n").split("\n"))
        + "\n"
    )


SOPS_EXEC = """#!/bin/sh
# A minimal exec KRM generator: the real sops binary decrypts each file (stand-in for KSOPS).
set -eu
cat >/dev/null
printf 'apiVersion: config.kubernetes.io/v1\\nkind: ResourceList\\nitems:\\n'
for f in {files}; do
  printf -- '- '
  {sops} --decrypt "$f" | sed -e '1!s/^/  /'
done
"""


def bench_render(args, env: dict, tmp: Path) -> list[tuple[str, float | None, str]]:
    """Build every variant once per round, round after round, so that a busy machine slows
    them alike; report each variant's median."""
    kz = kustomize()
    values = lab_values(env)
    target = args.target
    if not (REPO / target / "kustomization.yaml").exists():
        log(f"{target} has no kustomization.yaml here; benchmarking {LAB_SECRETS}")
        target = LAB_SECRETS
    sops = str(venv_bin() / "sops")

    def prep_sops(d: Path) -> None:
        files = " ".join(sorted(f.name for f in d.glob("*.sops.yaml")))
        script = d / "sops-exec.sh"
        script.write_text(SOPS_EXEC.format(files=files, sops=sops))
        script.chmod(0o755)
        variant_exec(d, "./sops-exec.sh", "bench.example/v1", "SopsExec", "files")

    variants = [
        (
            "plain",
            "kustomize secretGenerator (plaintext, no decryption)",
            lambda d: variant_plain(d, values),
        ),
        ("krm-secrets", "krm-secrets exec generator (SOPS/age decryption)", lambda d: None),
    ]
    ksops = go_tool(*KSOPS, "kustomize-sops")
    if ksops:
        variants.append(
            (
                "ksops",
                "KSOPS exec generator",
                lambda d: variant_exec(d, ksops, "viaduct.ai/v1", "ksops", "files"),
            )
        )
    variants.append(("sops-exec", "`sops --decrypt` per file in a shell exec generator", prep_sops))
    cmds = {}
    for key, label, prepare in variants:
        root = tmp / key
        scratch_repo(root)
        prepare(root / LAB_SECRETS)
        cmd = [kz, "build", *FLAGS, str(root / target)]
        probe = subprocess.run(cmd, capture_output=True, env=env)
        if probe.returncode != 0:
            die(f"{label}: {' '.join(cmd)} failed:\n{probe.stderr.decode(errors='replace')}")
        cmds[key] = cmd
    times: dict[str, list[float]] = {k: [] for k in cmds}
    log(f"render: {len(cmds)} variants, {args.runs} rounds")
    for _ in range(args.runs):
        for key, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env, check=True)
            times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows: list[tuple[str, float | None, str]] = []
    for key, label, _ in variants:
        rows.append(
            (
                label,
                med[key],
                f"{med[key] / med['plain']:.2f}× (+{(med[key] - med['plain']) * 1000:.0f} ms)",
            )
        )
        if key == "krm-secrets" and not ksops:
            rows.append(
                ("KSOPS exec generator", None, "not built: the Go module proxy refused the module")
            )
    return rows


# --- sealing ------------------------------------------------------------------------------------


def bench_seal(args, env: dict, tmp: Path) -> list[tuple[str, float | None, str]]:
    import yaml

    cert = REPO / "tests" / "keys" / "sealed-secrets-test.crt"
    kubeseal = go_tool(*KUBESEAL, "kubeseal")
    values = {f"KEY_{i:04d}": base64.b64encode(os.urandom(24)).decode() for i in range(args.keys)}
    secret = tmp / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "bench", "namespace": "backstage"},
                "stringData": values,
            }
        )
    )
    rows: list[tuple[str, float | None, str]] = []
    ours_cmd = [str(venv_bin() / "krm-secrets"), "seal", str(secret), "--cert", str(cert)]
    if not kubeseal:
        ours = median_of(args.seal_runs, lambda: run(ours_cmd, env=env))
        rows.append((f"`krm-secrets seal`, {args.keys} keys in one Secret", ours, "1.00×"))
        rows.append(("kubeseal", None, "not built"))
        return rows
    batch_cmd = [kubeseal, "--cert", str(cert), "-o", "yaml"]
    data = secret.read_bytes()
    run(ours_cmd, env=env)  # warm-up
    run(batch_cmd, input=data, env=env)
    log(f"seal: krm-secrets and kubeseal (batch), {args.keys} keys, {args.seal_runs} rounds")
    t_ours, t_batch = [], []
    for _ in range(args.seal_runs):  # alternate, so that load slows both alike
        start = time.perf_counter()
        run(ours_cmd, env=env)
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        run(batch_cmd, input=data, env=env)
        t_batch.append(time.perf_counter() - start)
    ours, batch = statistics.median(t_ours), statistics.median(t_batch)
    rows.append((f"`krm-secrets seal`, {args.keys} keys in one Secret", ours, "1.00×"))
    rows.append(
        (
            f"`kubeseal` on the same Secret ({args.keys} keys, its batch mode)",
            batch,
            f"{batch / ours:.2f}×",
        )
    )
    files = []
    for k, v in values.items():
        f = tmp / f"v-{k}"
        f.write_text(v)
        files.append(f)

    def loop() -> None:
        for f in files:
            run(
                [
                    kubeseal,
                    "--raw",
                    "--cert",
                    str(cert),
                    "--scope",
                    "strict",
                    "--name",
                    "bench",
                    "--namespace",
                    "backstage",
                    "--from-file",
                    str(f),
                ],
                env=env,
            )

    runs = max(1, min(args.seal_runs, 3))
    log(f"seal: kubeseal --raw loop, {args.keys} processes, {runs} runs")
    looped = median_of(runs, loop)
    rows.append(
        (
            f"`kubeseal --raw` once per key ({args.keys} processes)",
            looped,
            f"{looped / ours:.2f}×",
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="kustomize builds per render variant")
    parser.add_argument("--keys", type=int, default=1000, help="keys to seal")
    parser.add_argument("--seal-runs", type=int, default=5, help="runs per sealing variant")
    parser.add_argument("--target", default="overlays/lab", help="the kustomization to build")
    parser.add_argument("--skip-seal", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(REPO / "tests" / "keys" / "age.key")}
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SOPS_AGE_KEY", None)
    # Byte-compile the package: with PYTHONDONTWRITEBYTECODE set, every exec would compile it again.
    run([sys.executable, "-m", "compileall", "-q", str(REPO / "plugin" / "krm_secrets")])
    with tempfile.TemporaryDirectory(prefix="bench-secrets-") as t:
        tmp = Path(t)
        rows = bench_render(args, env, tmp)
        print(
            f"\n| render ({args.target}, median of {args.runs}) | time | vs plain |\n|---|---:|---|"
        )
        for label, secs, ratio in rows:
            print(f"| {label} | {f'{secs * 1000:.0f} ms' if secs is not None else '—'} | {ratio} |")
        if not args.skip_seal:
            rows = bench_seal(args, env, tmp)
            head = f"sealing {args.keys} keys (median)"
            print(f"\n| {head} | time | ÷ krm-secrets |\n|---|---:|---|")
            for label, secs, ratio in rows:
                print(f"| {label} | {f'{secs:.2f} s' if secs is not None else '—'} | {ratio} |")
    load = os.getloadavg()[0]
    cmd = " ".join(["scripts/bench-secrets.py", *sys.argv[1:]])
    print(f"\n{os.cpu_count()} CPUs, load average {load:.1f} at the end; `{cmd}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
