"""Configuring the programme: parse YAML/JSON, validate with line numbers, diff, apply.

The programme is one versioned document. `parse_programme` reports every
problem with its path and, for YAML, its line; `ProgrammeService.apply` stores
a new version (or, dry-run, only returns the diff) and brings reward stock
counters in line with the configured stock (by the configured difference, so
redemptions made meanwhile are kept).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
import yaml

from kunde.loyalty.errors import InvalidProgramme
from kunde.loyalty.models import Programme, ProgrammeProblem, semantic_problems
from kunde.loyalty.service import PROGRAMME_ID, LoyaltyService
from kunde.loyalty.tables import programmes, reward_stock
from kunde.store.sql import insert_ignore

if TYPE_CHECKING:
    from kunde.kernel import Kernel

_AT = re.compile(r"^(.*?)(?: - at (?:`key` in )?`(\$[^`]*)`)?$", re.S)
_PART = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")
SECTIONS = ("earn_rules", "tiers", "quests", "seasons", "rewards")


def _line_of(root: yaml.Node | None, path: str) -> int | None:
    """The 1-based line of the YAML node at a ``$.a[0].b`` path (nearest existing parent)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key, index in _PART.findall(path[1:]):
        if isinstance(node, yaml.MappingNode) and key:
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            break
        line = node.start_mark.line + 1
    return line


def parse_programme(text: str) -> Programme:
    """A validated `Programme` from YAML (or JSON) text; `InvalidProgramme` lists problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InvalidProgramme(f"not valid YAML: {getattr(exc, 'problem', exc)}",
                               problems=[{"path": "$", "line": line,
                                          "message": str(exc)}]) from exc
    return programme_from_data(data if data is not None else {}, root)


def programme_from_data(data: Any, root: yaml.Node | None = None) -> Programme:
    if not isinstance(data, dict):
        raise InvalidProgramme("a programme is a mapping of sections",
                               problems=[{"path": "$", "line": 1, "message": "not a mapping"}])
    try:
        prog = msgspec.convert(data, Programme)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        message, path = (m.group(1), m.group(2) or "$") if m else (str(exc), "$")
        problem = ProgrammeProblem(path, message, _line_of(root, path))
        raise InvalidProgramme(describe([problem]), problems=[msgspec.to_builtins(problem)]
                               ) from exc
    problems = semantic_problems(prog)
    if problems:
        for p in problems:
            p.line = _line_of(root, p.path)
        raise InvalidProgramme(describe(problems),
                               problems=[msgspec.to_builtins(p) for p in problems])
    return prog


def describe(problems: list[ProgrammeProblem]) -> str:
    return "; ".join(
        (f"line {p.line}: " if p.line else "") + f"{p.path}: {p.message}" for p in problems)


def diff(old: Programme, new: Programme) -> list[str]:
    """Human-readable changes, by section and id: ``+ rewards.tote``, ``~ tiers.gold``."""
    a, b = msgspec.to_builtins(old), msgspec.to_builtins(new)
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key in SECTIONS:
            olds = {x["id"]: x for x in a.get(key, [])}
            news = {x["id"]: x for x in b.get(key, [])}
            out += [f"- {key}.{i}" for i in olds if i not in news]
            out += [f"+ {key}.{i}" for i in news if i not in olds]
            for i in news:
                if i in olds and olds[i] != news[i]:
                    fields = sorted(f for f in set(olds[i]) | set(news[i])
                                    if olds[i].get(f) != news[i].get(f))
                    out.append(f"~ {key}.{i}: " + ", ".join(
                        f"{f} {olds[i].get(f)!r} -> {news[i].get(f)!r}" for f in fields))
        elif a.get(key) != b.get(key):
            out.append(f"~ {key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


class ProgrammeService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.svc = kernel.service(LoyaltyService)

    async def current(self) -> tuple[Programme, int]:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(programmes.c.version, programmes.c.config)
                                      .where(programmes.c.id == PROGRAMME_ID))).first()
        if row is None:
            return Programme(), 0
        return msgspec.convert(row.config, Programme), int(row.version)

    async def apply(self, new: Programme, *, actor: str, dry_run: bool = False
                    ) -> dict[str, Any]:
        """Store ``new`` as the next version; returns ``{version, changes, applied,
        warnings}`` (warnings: references that are valid but match nothing yet)."""
        old, version = await self.current()
        changes = diff(old, new)
        warnings = await self.warnings(new)
        if dry_run or not changes:
            return {"version": version, "changes": changes, "applied": False,
                    "warnings": warnings}
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            done = await uow.execute(programmes.update().where(
                programmes.c.id == PROGRAMME_ID, programmes.c.version == version,
            ).values(version=version + 1, config=msgspec.to_builtins(new), updated_at=now,
                     updated_by=actor))
            if done.rowcount == 0:
                ins = await uow.execute(insert_ignore(uow.dialect, programmes), {
                    "id": PROGRAMME_ID, "version": version + 1,
                    "config": msgspec.to_builtins(new), "updated_at": now, "updated_by": actor})
                if ins.rowcount == 0:
                    raise InvalidProgramme("the programme changed meanwhile; apply again",
                                           code="loyalty.programme_changed", status=409)
            old_stock = {r.id: r.stock for r in old.rewards}
            for r in new.rewards:
                await uow.execute(insert_ignore(uow.dialect, reward_stock),
                                  {"reward_id": r.id, "available": r.stock, "redeemed": 0})
                if r.id not in old_stock:
                    continue
                if r.stock is None:
                    await uow.execute(reward_stock.update().where(
                        reward_stock.c.reward_id == r.id).values(available=None))
                elif old_stock[r.id] is None:
                    await uow.execute(reward_stock.update().where(
                        reward_stock.c.reward_id == r.id).values(available=r.stock))
                elif r.stock != old_stock[r.id]:
                    await uow.execute(reward_stock.update().where(
                        reward_stock.c.reward_id == r.id).values(
                        available=sa.func.coalesce(reward_stock.c.available, 0)
                        + (r.stock - (old_stock[r.id] or 0))))
        self.svc.set_cached(new, version + 1)
        return {"version": version + 1, "changes": changes, "applied": True,
                "warnings": warnings}

    async def warnings(self, prog: Programme) -> list[str]:
        """Reward segments that name no Customer 360 segment (by name or id): nobody is
        eligible until such a segment exists."""
        wanted = {s for r in prog.rewards for s in r.segments}
        if not wanted:
            return []
        try:
            from kunde.profiles.service_segments import SegmentService
        except ImportError:  # profiles not installed: segments come from elsewhere
            return []
        known = {k for s in await self.kernel.service(SegmentService).all_segments()
                 for k in (s["id"], s["name"])}
        return [f"rewards.{r.id}.segments: no segment {s!r} yet; nobody is eligible"
                for r in prog.rewards for s in r.segments if s not in known]
