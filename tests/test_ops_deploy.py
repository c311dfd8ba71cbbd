"""The deploy/ files stay consistent with the code: settings, commands and ports."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import typer
import yaml

from kunde.settings import Settings

DEPLOY = Path(__file__).parent.parent / "deploy"
SETTINGS = {f"KUNDE_{name.upper()}" for name in Settings.__struct_fields__} | {
    "KUNDE_CONFIG_FILE"}
PORT = "8000"


def _cli_commands() -> set[str]:
    from kunde import cli

    if not any(c.name == "backup" for c in cli.app.registered_commands):
        cli._feature_commands()
    group = typer.main.get_command(cli.app)
    return set(getattr(group, "commands", {}))


def _check_command(argv: list[str], commands: set[str]) -> None:
    assert argv and argv[0] in commands, f"`kunde {' '.join(argv)}` is not a kunde command"
    if argv[0] == "serve":
        assert argv[argv.index("--port") + 1] in (PORT, "%i")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_services_use_real_commands_settings_and_ports() -> None:
    commands = _cli_commands()
    services = _compose()["services"]
    for role in ("postgres-primary", "postgres-replica", "server", "worker", "migrate", "lb",
                 "redis"):
        assert role in services, role
    kunde_services = [s for s in services.values() if s.get("image") == "kunde:latest"]
    assert len(kunde_services) == 3
    for service in kunde_services:
        _check_command(service["command"], commands)
        unknown = {k for k in service["environment"] if k.startswith("KUNDE_")} - SETTINGS
        assert not unknown, unknown
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["server"]["environment"]["KUNDE_RUN_CONSUMERS"] == "false"
    assert services["server"]["expose"] == [PORT]
    assert "redis" in services["redis"]["profiles"]
    assert services["postgres-primary"]["command"].count("wal_level=replica") == 1
    # Every file the compose file mounts exists.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).is_file(), source
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert f"server server:{PORT};" in nginx
    assert services["lb"]["ports"] == [f"{PORT}:80"]


def test_dockerfile_matches_the_cli_and_settings() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    commands = _cli_commands()
    assert re.search(rf"^EXPOSE {PORT}$", text, re.M)
    assert f"127.0.0.1:{PORT}/health/live" in text
    assert re.search(r'^ENTRYPOINT \["kunde"\]$', text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd
    _check_command(yaml.safe_load(cmd.group(1)), commands)
    names = set(re.findall(r"\b(KUNDE_[A-Z_]+)=", text))
    assert names and names <= SETTINGS


def test_env_example_names_only_real_settings() -> None:
    names = {line.split("=", 1)[0].lstrip("# ").strip()
             for line in (DEPLOY / "kunde.env.example").read_text().splitlines()
             if "=" in line and line.lstrip("# ").startswith("KUNDE_")}
    assert {"KUNDE_SECRET_KEY", "KUNDE_MASTER_KEY", "KUNDE_ENV"} <= names <= SETTINGS


def test_systemd_units_run_real_commands_with_real_settings() -> None:
    commands = _cli_commands()
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {"kunde-server@.service", "kunde-worker@.service"}
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        service = parser["Service"]
        for key in ("ExecStart", "ExecStartPre"):
            if key in service:
                argv = shlex.split(service[key])
                assert argv[0].endswith("/kunde"), unit.name
                _check_command(argv[1:], commands)
        for line in unit.read_text().splitlines():
            if line.startswith("Environment="):
                name = line.split("=", 2)[1]
                assert name in SETTINGS, (unit.name, name)
