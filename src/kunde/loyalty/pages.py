"""Console pages (analytics, member view, programme editor) and the customer portal page."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml
from litestar import Request, get, post
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Response, Template

from kunde.access.guard import current_principal
from kunde.core.errors import KundeError, NotFound
from kunde.loyalty.charts import bars, gauge
from kunde.loyalty.errors import InvalidProgramme
from kunde.loyalty.models import KNOWN_EVENTS, Cap, EarnRule
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_members import MemberViews, programme_summary
from kunde.loyalty.service_programme import ProgrammeService, parse_programme
from kunde.loyalty.service_rewards import RewardService
from kunde.loyalty.service_teams import TeamService
from kunde.web.deps import KernelDep
from kunde.web.pages import page, portal_page

T = "loyalty/templates/"
AnyRequest = Request[Any, Any, Any]


def _actor(request: AnyRequest) -> str:
    p = current_principal(request)
    return f"{p.kind}:{p.id}" if p else "unknown"


@get("/console/loyalty", opt={"permission": "loyalty:read"}, include_in_schema=False)
async def console_home(request: AnyRequest, kernel: KernelDep) -> Template:
    a = await kernel.service(MemberViews).analytics()
    prog = await kernel.service(LoyaltyService).programme()
    months = a["by_month"]
    charts = {
        "liability": bars(f"Points liability ({a['points_name']})",
                          [("available", a["liability"]["available"]),
                           ("pending", a["liability"]["pending"])]),
        "flow": bars("Earned per month", [(m, v["earned"]) for m, v in months.items()]),
        "redeemed": bars("Redeemed per month", [(m, v["redeemed"]) for m, v in months.items()]),
        "redemption": gauge("Redemption rate", float(a["redemption_rate"])),
        "quests": bars("Quest completions", list(a["quest_completions"].items())),
        "tiers": bars("Members by tier", [(t.name, a["members_by_tier"].get(t.id, 0))
                                          for t in prog.tiers]),
        "teams": bars("Team activity", [("teams", a["teams"]),
                                        ("members in teams", a["team_members"])]),
    }
    return page(request, T + "console_home.html", a=a, charts=charts,
                summary=programme_summary(prog))


@get("/console/loyalty/members/{customer_id:str}", opt={"permission": "loyalty:read"},
     include_in_schema=False)
async def console_member(request: AnyRequest, kernel: KernelDep, customer_id: FromPath[str]
                         ) -> Template:
    return await _member_page(request, kernel, customer_id)


async def _member_page(request: AnyRequest, kernel: Any, customer_id: str,
                       message: str | None = None) -> Template:
    views = kernel.service(MemberViews)
    return page(request, T + "console_member.html", cid=customer_id,
                ov=await views.overview(customer_id),
                history=await kernel.service(LoyaltyService).history(customer_id, 100),
                quests=await views.quests(customer_id),
                team=await kernel.service(TeamService).team_of(customer_id), message=message)


@get("/console/loyalty/find", opt={"permission": "loyalty:read"}, include_in_schema=False)
async def console_find(request: AnyRequest) -> Redirect:
    cid = (request.query_params.get("customer_id") or "").strip()
    if not cid:
        return Redirect("/console/loyalty", status_code=303)
    return Redirect(f"/console/loyalty/members/{cid}", status_code=303)


@post("/console/loyalty/members/{customer_id:str}/goodwill", include_in_schema=False,
      opt={"permission": "loyalty:goodwill", "criticality": "critical"})
async def console_goodwill(request: AnyRequest, kernel: KernelDep, customer_id: FromPath[str],
                           data: URLEncodedBody[dict[str, str]]) -> Template:
    try:
        points = int(data.get("points", "0"))
    except ValueError:
        points = 0
    if not 0 < points <= 100_000:
        return await _member_page(request, kernel, customer_id,
                                   message="Points must be between 1 and 100,000.")
    async with kernel.db.transaction() as uow:
        entry = await kernel.service(LoyaltyService).grant_goodwill(
            uow, customer_id, points, data.get("reason", "").strip() or "goodwill",
            data.get("cause_id") or f"console:{_actor(request)}:{data.get('nonce', '')}")
    msg = f"Granted {points} points." if entry else "Already granted for this cause."
    return await _member_page(request, kernel, customer_id, message=msg)


def _yaml(prog: Any) -> str:
    return str(yaml.safe_dump(msgspec.to_builtins(prog), sort_keys=False, allow_unicode=True))


@get("/console/loyalty/programme", opt={"permission": "loyalty:read"}, include_in_schema=False)
async def console_programme(request: AnyRequest, kernel: KernelDep) -> Template:
    prog, version = await kernel.service(ProgrammeService).current()
    return page(request, T + "console_programme.html", text=_yaml(prog), version=version,
                events=sorted(KNOWN_EVENTS), changes=None, problems=[], applied=False)


@post("/console/loyalty/programme", opt={"permission": "loyalty:write"},
      include_in_schema=False)
async def console_programme_save(request: AnyRequest, kernel: KernelDep,
                                 data: URLEncodedBody[dict[str, str]]) -> Template:
    text = data.get("programme", "")
    dry = data.get("action") != "apply"
    ctx: dict[str, Any] = {"text": text, "events": sorted(KNOWN_EVENTS), "problems": [],
                           "changes": None, "applied": False}
    try:
        result = await kernel.service(ProgrammeService).apply(
            parse_programme(text), actor=_actor(request), dry_run=dry)
        ctx.update(changes=result["changes"], applied=result["applied"],
                   version=result["version"])
    except InvalidProgramme as exc:
        ctx.update(problems=exc.extra.get("problems", []),
                   version=(await kernel.service(ProgrammeService).current())[1])
    return page(request, T + "console_programme.html", **ctx)


@post("/console/loyalty/programme/rules", opt={"permission": "loyalty:write"},
      include_in_schema=False)
async def console_add_rule(request: AnyRequest, kernel: KernelDep,
                           data: URLEncodedBody[dict[str, str]]) -> Response[Any]:
    svc = kernel.service(ProgrammeService)
    prog, _ = await svc.current()
    where = {data["where_field"]: data.get("where_value", "")} if data.get("where_field") else {}
    cap = (Cap(per=data.get("cap_per", "day"), max_times=int(data["cap_times"]))  # type: ignore[arg-type]
           if data.get("cap_times") else None)
    try:
        rule = EarnRule(id=data.get("id", "").strip(), event=data.get("event", ""),
                        label=data.get("label", ""), points=int(data.get("points") or 0),
                        where=where, cap=cap)
        new = msgspec.structs.replace(prog, earn_rules=[
            *[r for r in prog.earn_rules if r.id != rule.id], rule])
        await svc.apply(parse_programme(_yaml(new)), actor=_actor(request))
    except (KundeError, ValueError) as exc:
        return page(request, T + "console_programme.html", text=_yaml(prog),
                    events=sorted(KNOWN_EVENTS), changes=None, applied=False,
                    version=(await svc.current())[1],
                    problems=getattr(exc, "extra", {}).get("problems")
                    or [{"path": "rule", "line": None, "message": str(exc)}])
    return Redirect("/console/loyalty/programme", status_code=303)


# -- portal ------------------------------------------------------------------------------
def _customer(request: AnyRequest) -> str:
    p = current_principal(request)
    if p is None or p.kind != "customer" or not p.customer_id:
        raise NotFound("the portal is for customers", code="portal.customers_only")
    return p.customer_id


async def _portal(request: AnyRequest, kernel: Any, message: str | None = None,
                  error: str | None = None) -> Template:
    cid = _customer(request)
    views = kernel.service(MemberViews)
    ov = await views.overview(cid)
    progress = ov["tier_progress"].get("percent", 100) / 100
    return portal_page(request, T + "portal_loyalty.html", ov=ov, quests=await views.quests(cid),
                       team=await kernel.service(TeamService).team_of(cid),
                       rewards=await kernel.service(RewardService).catalog(cid),
                       tier_gauge=gauge("Progress to the next tier", progress),
                       message=message, error=error)


@get("/portal/loyalty", opt={"permission": "self"}, include_in_schema=False)
async def portal_loyalty(request: AnyRequest, kernel: KernelDep) -> Template:
    return await _portal(request, kernel)


@post("/portal/loyalty/redeem", opt={"permission": "self", "criticality": "critical"},
      include_in_schema=False)
async def portal_redeem(request: AnyRequest, kernel: KernelDep,
                        data: URLEncodedBody[dict[str, str]]) -> Template:
    cid = _customer(request)
    try:
        done = await kernel.service(RewardService).redeem(cid, data.get("reward_id", ""),
                                                          data.get("nonce") or None)
    except KundeError as exc:
        return await _portal(request, kernel, error=exc.detail)
    code = f" Your code: {done['code']}" if done.get("code") else ""
    return await _portal(request, kernel, message=f"Redeemed.{code}")


@post("/portal/loyalty/team", opt={"permission": "self"}, include_in_schema=False)
async def portal_team(request: AnyRequest, kernel: KernelDep,
                      data: URLEncodedBody[dict[str, str]]) -> Template:
    cid = _customer(request)
    teams = kernel.service(TeamService)
    try:
        if data.get("invite_code"):
            await teams.join(cid, data["invite_code"])
        else:
            await teams.create(cid, data.get("name", ""))
    except KundeError as exc:
        return await _portal(request, kernel, error=exc.detail)
    return await _portal(request, kernel, message="You are in the team.")


PAGES = [console_home, console_member, console_find, console_goodwill, console_programme,
         console_programme_save, console_add_rule, portal_loyalty, portal_redeem, portal_team]
