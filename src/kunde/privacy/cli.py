"""``kunde audit verify``, ``kunde keys rotate-master`` and ``kunde privacy …`` commands."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from kunde.clikit import _settings, err, out, run


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
    privacy_app = typer.Typer(help="Data-subject requests, retention, erasure log.",
                              no_args_is_help=True)
    app.add_typer(audit_app, name="audit")
    app.add_typer(privacy_app, name="privacy")
    audit_app.command("verify")(audit_verify)
    for name, fn in (("erase", erase), ("export", export), ("retention", retention),
                     ("ropa", ropa), ("reapply-erasures", reapply), ("resume", resume)):
        privacy_app.command(name)(fn)
    keys = next((g.typer_instance for g in app.registered_groups if g.name == "keys"), None)
    (keys or app).command("rotate-master")(rotate_master)


def audit_verify() -> None:
    """Recompute the audit log's hash chain; exits 1 when an entry was altered or removed."""
    from kunde.privacy.audit import AuditService

    report = run(_settings(), lambda k: k.service(AuditService).verify())
    if report.ok:
        out.print(f"[green]audit chain intact[/]: {report.checked} entries verified")
        return
    err.print(f"[red]audit chain broken[/] at entry {report.first_bad_seq}: {report.problem}")
    raise typer.Exit(1)


def rotate_master(
    new_key_env: Annotated[str, typer.Option(
        help="Environment variable holding the new master key (base64 of 32 bytes)."
    )] = "KUNDE_NEW_MASTER_KEY",
) -> None:
    """Re-wrap every data key under a new master key (the key is read from the environment)."""
    raw = os.environ.get(new_key_env, "")
    try:
        new = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        new = b""
    if len(new) != 32:
        err.print(f"[red]set {new_key_env} to base64 of 32 random bytes[/]")
        raise typer.Exit(2)

    async def work(kernel: Any) -> int:
        from kunde.privacy.audit import AuditService
        from kunde.privacy.vault import master_key_id

        async with kernel.db.transaction() as uow:
            n = int(await kernel.vault.rotate_master_key(uow, new))
            await kernel.service(AuditService).record(
                uow, "system:cli", "keys.master_rotated", None,
                {"keys_rewrapped": n, "new_master_key_id": master_key_id(new)})
        return n

    n = run(_settings(), work)
    out.print(f"[green]re-wrapped {n} keys[/]. Now set KUNDE_MASTER_KEY to the new key (keep "
              "the old one in KUNDE_PREVIOUS_MASTER_KEYS until every process restarted).")


def erase(customer_id: Annotated[str, typer.Argument(help="Customer id to erase.")],
          email: Annotated[str, typer.Option(help="Also suppress this email.")] = "") -> None:
    """Erase a customer across every feature and print the receipt."""
    from kunde.privacy.erasure import ErasureService

    async def work(kernel: Any) -> dict[str, Any]:
        svc = kernel.service(ErasureService)
        rid = await svc.request(customer_id, requested_by="system:cli", channel="cli",
                                identifiers={"email": email} if email else None)
        return dict(await svc.run(rid))

    out.print_json(data=run(_settings(), work), default=str)


def export(customer_id: Annotated[str, typer.Argument(help="Customer id.")],
           out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON.")]
           = Path("export.json")) -> None:
    """Build a customer's export bundle now and write the JSON to a file."""
    from kunde.core import jsonutil
    from kunde.privacy.export import ExportService

    async def work(kernel: Any) -> dict[str, Any]:
        svc = kernel.service(ExportService)
        rid = await svc.request(customer_id, requested_by="system:cli", channel="cli")
        return dict(await svc.build(customer_id, rid))

    bundle = run(_settings(), work)
    out_file.write_bytes(jsonutil.dumps(bundle))
    out.print(f"wrote {out_file} ({len(bundle['events'])} events)")


def retention() -> None:
    """Purge what is past its retention period now and print the report."""
    from kunde.privacy.retention import RetentionService

    report = run(_settings(), lambda k: k.service(RetentionService).run(actor="system:cli"))
    out.print_json(data=report, default=str)


def ropa() -> None:
    """Print the record of processing activities (Art. 30) as Markdown."""
    from kunde.features import all_features
    from kunde.privacy.processing import as_markdown, processing_record

    print(as_markdown(processing_record(all_features(), _settings())))


def reapply() -> None:
    """After restoring a backup: erase again everyone in the erasure log."""
    from kunde.privacy.erasure import reapply_erasures

    n = run(_settings(), reapply_erasures)
    out.print(f"re-applied {n} erasures")


def resume() -> None:
    """Finish erasure and export requests that a crash left open."""
    from kunde.privacy.erasure import ErasureService
    from kunde.privacy.export import ExportService

    async def work(kernel: Any) -> tuple[int, int]:
        done = await kernel.service(ErasureService).resume_all()
        return len(done), await kernel.service(ExportService).run_queued()

    erased, exported = run(_settings(), work)
    out.print(f"finished {erased} erasures and {exported} exports")
