"""Loyalty HTTP API: member endpoints ("self") and staff endpoints (programme, simulation,
goodwill, analytics). Examples: docs/loyalty.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.core import jsonutil
from kunde.core.errors import Forbidden, InvalidInput
from kunde.loyalty.service import LoyaltyService
from kunde.loyalty.service_members import MemberViews
from kunde.loyalty.service_programme import ProgrammeService, parse_programme, programme_from_data
from kunde.loyalty.service_rewards import RewardService
from kunde.loyalty.service_seasons import SeasonEnd
from kunde.loyalty.service_teams import TeamService
from kunde.loyalty.webhooks import LoyaltyWebhooks
from kunde.web.deps import KernelDep

TAGS = ["loyalty"]
READ = {"permission": "self", "criticality": "interactive"}


class RedeemIn(msgspec.Struct, forbid_unknown_fields=True):
    reward_id: str


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class JoinIn(msgspec.Struct, forbid_unknown_fields=True):
    invite_code: str


class GoodwillIn(msgspec.Struct, forbid_unknown_fields=True):
    points: int
    reason: str
    cause_id: str


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    event_types: list[str]
    secret: str | None = None


class SimulateIn(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    payload: dict[str, Any] = {}
    channel: str | None = None
    at: datetime | None = None
    tier: str | None = None
    customer_id: str | None = None


def _self(request: Request[Any, Any, Any], customer_id: str) -> None:
    p = current_principal(request)
    if p is None or not p.may_access_customer(customer_id):
        raise Forbidden("you may only see your own loyalty account", code="loyalty.forbidden")


def _actor(request: Request[Any, Any, Any]) -> str:
    p = current_principal(request)
    return f"{p.kind}:{p.id}" if p else "unknown"


@get("/v1/loyalty/members/{customer_id:str}", opt=READ, tags=TAGS,
     summary="Member overview: balance, pending, tier, benefits, tier progress, season")
async def member_overview(kernel: KernelDep, request: Request[Any, Any, Any],
                          customer_id: FromPath[str]) -> dict[str, Any]:
    _self(request, customer_id)
    return await kernel.service(MemberViews).overview(customer_id)


@get("/v1/loyalty/members/{customer_id:str}/balance", opt=READ, tags=TAGS,
     summary="Balance, pending points and tier (the hot read)")
async def member_balance(kernel: KernelDep, request: Request[Any, Any, Any],
                         customer_id: FromPath[str]) -> dict[str, Any]:
    _self(request, customer_id)
    return await kernel.service(LoyaltyService).member_summary(customer_id)


@get("/v1/loyalty/members/{customer_id:str}/history", opt=READ, tags=TAGS,
     summary="Ledger history, newest first, with the reason of every entry")
async def member_history(kernel: KernelDep, request: Request[Any, Any, Any],
                         customer_id: FromPath[str], limit: FromQuery[int] = 50
                         ) -> list[dict[str, Any]]:
    _self(request, customer_id)
    return await kernel.service(LoyaltyService).history(customer_id, max(1, min(limit, 500)))


@get("/v1/loyalty/members/{customer_id:str}/quests", opt=READ, tags=TAGS,
     summary="Quests for this member (ranked for them) with progress")
async def member_quests(kernel: KernelDep, request: Request[Any, Any, Any],
                        customer_id: FromPath[str]) -> list[dict[str, Any]]:
    _self(request, customer_id)
    return await kernel.service(MemberViews).quests(customer_id)


@get("/v1/loyalty/members/{customer_id:str}/rewards", opt=READ, tags=TAGS,
     summary="The rewards catalog ranked for this member, with eligibility and stock")
async def member_rewards(kernel: KernelDep, request: Request[Any, Any, Any],
                         customer_id: FromPath[str]) -> list[dict[str, Any]]:
    _self(request, customer_id)
    return await kernel.service(RewardService).catalog(customer_id)


@post("/v1/loyalty/members/{customer_id:str}/redemptions", tags=TAGS, status_code=201,
      opt={"permission": "self", "criticality": "critical"},
      summary="Redeem a reward (atomic; send an Idempotency-Key)")
async def redeem(kernel: KernelDep, request: Request[Any, Any, Any], customer_id: FromPath[str],
                 data: JSONBody[RedeemIn]) -> dict[str, Any]:
    _self(request, customer_id)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters",
                           code="loyalty.invalid_idempotency_key")
    return await kernel.service(RewardService).redeem(customer_id, data.reward_id, key)


@get("/v1/loyalty/members/{customer_id:str}/team", opt=READ, tags=TAGS,
     summary="The member's team, pooled quest progress and contributions")
async def member_team(kernel: KernelDep, request: Request[Any, Any, Any],
                      customer_id: FromPath[str]) -> dict[str, Any] | None:
    _self(request, customer_id)
    return await kernel.service(TeamService).team_of(customer_id)


@post("/v1/loyalty/members/{customer_id:str}/team", opt={"permission": "self"}, tags=TAGS,
      status_code=201, summary="Create a team (you become its first member)")
async def create_team(kernel: KernelDep, request: Request[Any, Any, Any],
                      customer_id: FromPath[str], data: JSONBody[TeamIn]) -> dict[str, Any]:
    _self(request, customer_id)
    return await kernel.service(TeamService).create(customer_id, data.name)


@post("/v1/loyalty/members/{customer_id:str}/team/join", opt={"permission": "self"},
      tags=TAGS, summary="Join a team with its invite code")
async def join_team(kernel: KernelDep, request: Request[Any, Any, Any],
                    customer_id: FromPath[str], data: JSONBody[JoinIn]) -> dict[str, Any]:
    _self(request, customer_id)
    return await kernel.service(TeamService).join(customer_id, data.invite_code)


@delete("/v1/loyalty/members/{customer_id:str}/team", opt={"permission": "self"}, tags=TAGS,
        status_code=204, summary="Leave your team")
async def leave_team(kernel: KernelDep, request: Request[Any, Any, Any],
                     customer_id: FromPath[str]) -> None:
    _self(request, customer_id)
    await kernel.service(TeamService).leave(customer_id)


@get("/v1/loyalty/leaderboards/{quest_id:str}", opt=READ, tags=TAGS,
     summary="Teams ranked by pooled progress on a team quest this round")
async def leaderboard(kernel: KernelDep, quest_id: FromPath[str]) -> list[dict[str, Any]]:
    return await kernel.service(TeamService).leaderboard(quest_id)


# -- staff ---------------------------------------------------------------------------
@get("/v1/loyalty/seasons/{season_id:str}/standings",
     opt={"permission": "loyalty:read", "criticality": "background"}, tags=TAGS,
     summary="Final standings of a finished season (by rank), once the season-end job ran")
async def season_standings(kernel: KernelDep, season_id: FromPath[str],
                           limit: FromQuery[int] = 50) -> dict[str, Any]:
    return await kernel.service(SeasonEnd).standings(season_id, max(1, min(limit, 500)))



@get("/v1/loyalty/programme", opt={"permission": "loyalty:read"}, tags=TAGS,
     summary="The current programme and its version")
async def get_programme(kernel: KernelDep) -> dict[str, Any]:
    prog, version = await kernel.service(ProgrammeService).current()
    return {"version": version, "programme": msgspec.to_builtins(prog)}


@put("/v1/loyalty/programme", opt={"permission": "loyalty:write"}, tags=TAGS,
     summary="Replace the programme (JSON, or YAML with Content-Type application/yaml); "
             "?dry_run=true only returns the diff")
async def put_programme(kernel: KernelDep, request: Request[Any, Any, Any],
                        dry_run: FromQuery[bool] = False) -> dict[str, Any]:
    body = await request.body()
    if "yaml" in request.headers.get("content-type", ""):
        prog = parse_programme(body.decode("utf-8", "replace"))
    else:
        try:
            data = jsonutil.loads(body)
        except Exception as exc:
            raise InvalidInput("the body is not JSON", code="loyalty.invalid_programme") from exc
        prog = programme_from_data(data)
    return await kernel.service(ProgrammeService).apply(prog, actor=_actor(request),
                                                        dry_run=dry_run)


@post("/v1/loyalty/simulate", opt={"permission": "loyalty:read"}, tags=TAGS, status_code=200,
      summary="What would this event earn, and why (changes nothing)")
async def simulate(kernel: KernelDep, data: JSONBody[SimulateIn]) -> dict[str, Any]:
    return await kernel.service(MemberViews).simulate(
        data.type, data.payload, channel=data.channel, at=data.at, tier=data.tier,
        customer_id=data.customer_id)


@post("/v1/loyalty/members/{customer_id:str}/goodwill", tags=TAGS, status_code=201,
      opt={"permission": "loyalty:goodwill", "criticality": "critical"},
      summary="Grant goodwill points, once per cause_id")
async def goodwill(kernel: KernelDep, customer_id: FromPath[str],
                   data: JSONBody[GoodwillIn]) -> dict[str, Any]:
    if data.points <= 0 or data.points > 1_000_000:
        raise InvalidInput("points must be between 1 and 1,000,000",
                           code="loyalty.invalid_points")
    async with kernel.db.transaction() as uow:
        entry = await kernel.service(LoyaltyService).grant_goodwill(
            uow, customer_id, data.points, data.reason, data.cause_id)
    return {"entry_id": entry, "granted": entry is not None}


@get("/v1/loyalty/analytics", opt={"permission": "loyalty:read", "criticality": "background"},
     tags=TAGS, summary="Liability, redemption rate, quest completion, team activity")
async def analytics(kernel: KernelDep) -> dict[str, Any]:
    return await kernel.service(MemberViews).analytics()


@post("/v1/loyalty/webhooks", opt={"permission": "loyalty:write"}, tags=TAGS,
      status_code=201, summary="Subscribe an endpoint to loyalty events (signed deliveries)")
async def add_webhook(kernel: KernelDep, data: JSONBody[WebhookIn]) -> dict[str, Any]:
    return await kernel.service(LoyaltyWebhooks).subscribe(data.url, data.event_types,
                                                           data.secret)


ROUTES = [member_overview, member_balance, member_history, member_quests, member_rewards,
          redeem, member_team, create_team, join_team, leave_team, leaderboard, get_programme,
          put_programme, simulate, goodwill, analytics, add_webhook, season_standings]
