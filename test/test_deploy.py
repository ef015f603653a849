"""Deployment files: every shell script passes shellcheck, every Dockerfile hadolint, the compose
file validates against the Compose specification and has the services and profiles README
describes, and setup_jetson.sh behaves on a machine that is not a Jetson."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("scripts/*.sh"), *ROOT.glob("docker/*.sh"), ROOT / ".ci" / "run"])
DOCKERFILES = sorted(ROOT.glob("docker/Dockerfile.*"))
COMPOSE = ROOT / "docker" / "docker-compose.yml"
ENV = {"POSTGRES_PASSWORD": "secret", "BACKEND_API_TOKEN": "token", "BACKEND_API_URL": "http://fleet:8000"}


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/setup.sh --test`")
    return path


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script):
    proc = subprocess.run([tool("shellcheck"), "--external-sources", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    proc = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def interpolate(text: str, env: dict) -> str:
    """Compose's variable syntax: ${VAR}, ${VAR:-default}, ${VAR:?error} (what `docker compose config` does)."""
    def value(match):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text)


def compose_spec(env=ENV):
    from compose_spec import PyCompose

    return PyCompose.from_yaml(interpolate(COMPOSE.read_text(), env)).to_spec()


def test_compose_file_follows_the_compose_specification():
    spec = compose_spec()
    assert set(spec.services) == {"db", "backend", "robot"}


def test_compose_services_and_profiles():
    raw = yaml.safe_load(interpolate(COMPOSE.read_text(), ENV))
    services = raw["services"]
    assert set(services["db"]["profiles"]) == set(services["backend"]["profiles"]) == {"local", "server"}
    assert set(services["robot"]["profiles"]) == {"local", "remote"}
    assert services["db"]["healthcheck"]["test"][0] == "CMD-SHELL" and "pgdata" in raw["volumes"]
    assert services["backend"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "nsm" in services["backend"]["command"] and "serve" in services["backend"]["command"]
    robot = services["robot"]
    assert robot["network_mode"] == "host" and robot["runtime"] == "nvidia"
    assert any(d.endswith(":/dev/ttyACM0") for d in robot["devices"]) and any("/dev/video" in d for d in robot["devices"])
    assert robot["environment"]["BACKEND_API_URL"] == "http://fleet:8000"
    assert "db_url:=http://fleet:8000" in robot["command"]
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):  # a missing secret stops compose with its message
        compose_spec({k: v for k, v in ENV.items() if k != "POSTGRES_PASSWORD"})


def run_setup(*args, tegra=None):
    env = os.environ | ({"NSM_TEGRA_RELEASE": str(tegra)} if tegra else {"NSM_TEGRA_RELEASE": "/nonexistent/nv_tegra_release"})
    return subprocess.run(["bash", str(ROOT / "scripts" / "setup_jetson.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_setup_jetson_on_a_machine_that_is_not_a_jetson():
    proc = run_setup("--dry-run")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "not a Jetson: /nonexistent/nv_tegra_release is missing; this script prepares a Jetson (JetPack 6) only"]


def test_setup_jetson_dry_run_on_jetpack_6_changes_nothing(tmp_path):
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.0, GCID: 0, BOARD: generic, EABI: aarch64\n")
    touched = [Path(p) for p in ("/swapfile", "/etc/fstab", "/etc/udev/rules.d/99-nsm.rules", "/etc/docker/daemon.json")]

    def state():
        return [(p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else None for p in touched]

    before = state()
    proc = run_setup("--dry-run", "--swap-gb", "4096", tegra=release)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ok: L4T # R36 (release)" in out and "dry run: nothing will be changed" in out
    assert "would run: fallocate -l 4096G /swapfile" in out  # nobody has 4 TiB of swap: the step is shown, not run
    assert state() == before  # the files it would change are as they were
    old = release.with_name("old")
    old.write_text("# R35 (release), REVISION: 5.0\n")
    proc = run_setup("--dry-run", tegra=old)
    assert proc.returncode == 2 and "JetPack 6 (L4T R36) is needed" in proc.stderr
