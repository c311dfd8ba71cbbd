"""Personalisation: recommenders, CLV and churn, next-best-offer, experiments and flags."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from kunde.features import Feature, NavItem
from kunde.kernel import Kernel
from kunde.store.jobs import PeriodicJob


def _consumers(kernel: Kernel) -> Sequence[object]:
    from kunde.personalisation.handlers import consumers

    return consumers(kernel)


def _jobs(kernel: Kernel) -> Sequence[PeriodicJob]:
    from kunde.personalisation.errors import TrainingFailed
    from kunde.personalisation.service import RecommendationService
    from kunde.personalisation.service_scores import ScoresService

    async def retrain() -> str:
        try:
            summary = await kernel.service(RecommendationService).train()
        except TrainingFailed as exc:
            return f"skipped: {exc.detail}"
        return f"trained {summary['version']}"

    async def rescore() -> str:
        return await kernel.service(ScoresService).refresh()

    return [PeriodicJob("personalisation.train", timedelta(hours=6), retrain,
                        timeout=timedelta(minutes=20)),
            PeriodicJob("personalisation.scores", timedelta(hours=24), rescore)]


async def _demo(kernel: Kernel) -> None:
    from kunde.personalisation.demo import load

    await load(kernel)


def _routes() -> list[object]:
    from kunde.personalisation.pages import PAGES
    from kunde.personalisation.routes import ROUTES

    return [*ROUTES, *PAGES]


def _cli(app: object) -> None:
    from kunde.personalisation.cli import register

    register(app)  # type: ignore[arg-type]


async def _export(kernel: Kernel, ids: Sequence[str]) -> dict[str, object]:
    from kunde.personalisation.privacy import export

    return await export(kernel, ids)


async def _erase(kernel: Kernel, uow: object, ids: Sequence[str]) -> dict[str, int]:
    from kunde.personalisation.privacy import erase

    return await erase(kernel, uow, ids)  # type: ignore[arg-type]


FEATURE = Feature(
    name="personalisation",
    routes=_routes(),
    consumers=_consumers,  # type: ignore[arg-type]
    jobs=_jobs,
    demo=_demo,
    nav=(NavItem("Recommendations", "/console/personalisation/", "personalisation:read"),
         NavItem("Customer value", "/console/personalisation/value", "personalisation:read"),
         NavItem("Experiments", "/console/personalisation/experiments", "experiments:read")),
    export=_export,
    erase=_erase,
    cli=_cli,
)
