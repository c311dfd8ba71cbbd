"""The ``kunde`` command. Every command runs without prompts so scripts and tests can drive it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from kunde.clikit import _settings, err, out, run

app = typer.Typer(
    name="kunde",
    help="Kunde, the connected-customer platform. Configure with KUNDE_* variables "
    "(KUNDE_DATABASE_URL, KUNDE_DATA_DIR, KUNDE_ENV, ...); see README.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="API keys for server-to-server calls.", no_args_is_help=True)
sources_app = typer.Typer(help="Event sources and their Segment write keys.",
                          no_args_is_help=True)
users_app = typer.Typer(help="Staff users of the console.", no_args_is_help=True)
consumers_app = typer.Typer(help="Event-log consumers: lag and replay.", no_args_is_help=True)
schema_app = typer.Typer(help="The database schema: how it shards.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(sources_app, name="sources")
app.add_typer(users_app, name="users")
app.add_typer(consumers_app, name="consumers")
app.add_typer(schema_app, name="schema")


def _feature_commands() -> None:
    from kunde.features import all_features

    for feature in all_features():
        if feature.cli:
            feature.cli(app)
@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run repeatedly and concurrently)."""
    settings = _settings()

    async def work(kernel: Any) -> None:
        return None

    run(settings, work)
    out.print(f"[green]schema is current[/] on {settings.effective_database_url.split('@')[-1]}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="HTTP worker processes.")] = 1,
    server: Annotated[str, typer.Option(help="granian (default) or uvicorn.")] = "granian",
) -> None:
    """Run the HTTP server (and, unless KUNDE_RUN_CONSUMERS=false, the background work)."""
    os.environ["KUNDE_HOST"], os.environ["KUNDE_PORT"] = host, str(port)
    settings = _settings()
    run(settings, lambda k: asyncio.sleep(0))  # migrate and check durability once, up front
    out.print(f"Kunde listening on http://{host}:{port}  (console: /console/, API docs: /docs)")
    _serve(host, port, workers, server)


def _serve(host: str, port: int, workers: int, server: str) -> None:
    if server == "uvicorn":
        import uvicorn

        uvicorn.run("kunde.app:asgi", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")
        return
    from granian import Granian

    Granian("kunde.app:asgi", address=host, port=port, interface="asgi",  # type: ignore[arg-type]
            workers=workers, factory=True, log_enabled=False).serve()


@app.command()
def worker() -> None:
    """Run event consumers and periodic jobs without HTTP; start several to share the work."""
    from kunde.features import all_features
    from kunde.runtime import Background

    settings = _settings()

    async def work(kernel: Any) -> None:
        background = Background(kernel, all_features())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, background.request_stop)
        await background.start()
        out.print(f"worker {background.leases.worker_id} running; Ctrl-C stops it")
        await background.wait()
        await background.stop()

    run(settings, work, migrate=False)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the demo server.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    load_only: Annotated[bool, typer.Option(help="Load demo data and exit.")] = False,
) -> None:
    """Start Kunde on the embedded SQLite default with demo data, and print where to go."""
    os.environ.setdefault("KUNDE_ENV", "dev")
    os.environ["KUNDE_HOST"], os.environ["KUNDE_PORT"] = host, str(port)
    settings = _settings()
    if not settings.is_dev:
        err.print("[red]kunde demo runs only with KUNDE_ENV=dev[/]")
        raise typer.Exit(2)
    from kunde.demo import DEMO_LOGINS, load_demo

    info = run(settings, load_demo)
    base = f"http://{host}:{port}"
    out.print("\n[bold]Kunde demo[/]")
    out.print(f"  data:     {settings.effective_database_url}")
    out.print(f"  console:  {base}/console/")
    out.print(f"  API docs: {base}/docs")
    for email, password, role in DEMO_LOGINS:
        out.print(f"  log in as [cyan]{email}[/] / [cyan]{password}[/] ({role})")
    for line in info:
        out.print(f"  {line}")
    if load_only:
        return
    _serve(host, port, 1, "granian")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'shop-backend'.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated, e.g. profiles:read,loyalty:*")],
) -> None:
    """Create an API key and print it once; store it now, it cannot be shown again."""
    settings = _settings()
    key_id, key = run(settings, lambda k: k.access.create_api_key(
        name, [s.strip() for s in scopes.split(",") if s.strip()]))
    err.print(f"created API key {key_id} ({name}); this is the only time it is shown:")
    print(key)


@sources_app.command("create")
def sources_create(
    name: Annotated[str, typer.Argument(help="Source name, e.g. 'webshop'.")],
    channel: Annotated[str, typer.Option(help="web, app, store, service, email, server, other")]
    = "web",
) -> None:
    """Create an event source and print its Segment write key once."""
    settings = _settings()
    _, write_key = run(settings, lambda k: k.access.create_source(name, channel))
    err.print(f"created source {name} ({channel}); its write key, shown once:")
    print(write_key)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Log-in email.")],
    role: Annotated[str, typer.Option(help="admin, agent, marketer or analyst.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_env: Annotated[str, typer.Option(
        help="Read the password from this environment variable (never from the command line)."
    )] = "KUNDE_NEW_PASSWORD",  # noqa: S107 - the name of a variable, not a password
) -> None:
    """Create a staff user; the password comes from an environment variable."""
    password = os.environ.get(password_env, "")
    if not password:
        err.print(f"[red]set {password_env} to the new user's password[/]")
        raise typer.Exit(2)
    settings = _settings()
    user_id = run(settings, lambda k: k.access.create_user(email, name or email, role, password))
    out.print(f"created {role} {email} ({user_id})")


@consumers_app.command("lag")
def consumers_lag() -> None:
    """Show how many events each consumer has not handled yet."""
    from rich.table import Table

    from kunde.store.consumers import consumer_lag

    settings = _settings()
    lag = run(settings, lambda k: consumer_lag(k.db))
    table = Table("consumer", "lag (events)")
    for name, n in sorted(lag.items()):
        table.add_row(name, str(n))
    out.print(table)


@consumers_app.command("replay")
def consumers_replay(
    consumer: Annotated[str, typer.Argument(help="Consumer name.")],
    from_position: Annotated[int, typer.Option("--from", help="Re-handle events after this.")] = 0,
) -> None:
    """Rewind a consumer so it handles events again (handlers are idempotent)."""
    from kunde.store.consumers import replay

    settings = _settings()
    n = run(settings, lambda k: replay(k.db, consumer, from_position))
    out.print(f"rewound {consumer} on {n} partitions to position {from_position}")


@schema_app.command("citus")
def schema_citus() -> None:
    """Print the Citus statements that distribute a migrated Kunde database.

    Run them with psql on the coordinator after `kunde migrate`; docs/deployment.md
    says how. Nothing is changed by this command."""
    from kunde.store import distribution, migrate

    md = migrate.all_metadata()
    problems = distribution.problems(md)
    if problems:
        for line in problems:
            err.print(f"[red]{line}[/]")
        err.print("the schema is not distributable as declared; fix the tables above")
        raise typer.Exit(1)
    print("\n".join(distribution.citus_ddl(md)))


def main() -> None:
    Path(os.environ.get("KUNDE_DATA_DIR", "kunde-data")).mkdir(parents=True, exist_ok=True)
    _feature_commands()
    app()
