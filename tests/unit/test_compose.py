"""docker-compose.yml cannot run here (no Docker engine); keep it valid and consistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from imgkit.settings import Settings
from tests.conftest import REPO


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_cluster_services() -> None:
    services = load_compose()["services"]
    for name in ("kafka", "clickhouse", "api", "worker", "index", "screenshot", "nginx"):
        assert name in services, f"docker-compose.yml lacks {name}"
    assert "kafka" in services["api"]["depends_on"]


def test_every_imgkit_variable_in_compose_is_a_setting() -> None:
    known = {f"IMGKIT_{name.upper()}" for name in Settings.model_fields}
    used: set[str] = set()
    for service in load_compose()["services"].values():
        used |= {k for k in (service.get("environment") or {}) if k.startswith("IMGKIT_")}
    assert used, "compose sets no IMGKIT_ variables"
    assert used <= known, f"unknown settings in docker-compose.yml: {sorted(used - known)}"


def test_compose_commands_are_imgkit_commands() -> None:
    from imgkit.cli import app

    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    for name, service in load_compose()["services"].items():
        if service.get("image", "").startswith("imgkit"):
            assert service["command"][0] in commands, f"{name}: unknown command {service['command']}"


def test_files_the_compose_file_mounts_exist() -> None:
    for service in load_compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{source} is mounted but missing"
    assert Path(REPO / "deploy" / "Dockerfile").exists()
