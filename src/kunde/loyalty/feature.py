"""Loyalty: points ledger, earn rules, tiers, welcome rewards, quests, seasons, teams, rewards."""
from kunde.features import Feature, NavItem
from kunde.loyalty import demo, privacy
from kunde.loyalty.cli import register
from kunde.loyalty.handlers import consumers, jobs
from kunde.loyalty.pages import PAGES
from kunde.loyalty.routes import ROUTES

FEATURE = Feature(
    name="loyalty",
    routes=[*ROUTES, *PAGES],
    nav=(NavItem("Loyalty", "/console/loyalty", "loyalty:read"),
         NavItem("Loyalty programme", "/console/loyalty/programme", "loyalty:read")),
    portal_nav=(NavItem("Points & rewards", "/portal/loyalty", "self"),),
    consumers=consumers,
    jobs=jobs,
    permissions=("loyalty:read", "loyalty:write", "loyalty:goodwill"),
    cli=register,
    demo=demo.load,
    export=privacy.export,
    erase=privacy.erase,
)
