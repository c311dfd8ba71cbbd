"""Customer service: cases, conversations, macros, feedback (CSAT/NPS), reporting."""
from kunde.features import Feature, NavItem
from kunde.service import cli, handlers, privacy
from kunde.service.demo import load_demo
from kunde.service.pages import PAGE_ROUTES
from kunde.service.portal import PORTAL_ROUTES
from kunde.service.routes import API_ROUTES
from kunde.service.smtp import start_with_server, stop_with_server

FEATURE = Feature(
    name="service",
    routes=[*API_ROUTES, *PAGE_ROUTES, *PORTAL_ROUTES],
    consumers=handlers.consumers,
    jobs=handlers.jobs,
    demo=load_demo,
    nav=[NavItem("Service cases", "/console/service", "service:cases"),
         NavItem("Service reports", "/console/service/reports", "service:read"),
         NavItem("Inbound review", "/console/service/review", "service:cases"),
         NavItem("Macros", "/console/service/macros", "service:cases")],
    portal_nav=[NavItem("Help", "/portal/service", "self")],
    startup=start_with_server,
    shutdown=stop_with_server,
    permissions=("service:read", "service:cases", "service:write", "service:macros"),
    export=privacy.export,
    erase=privacy.erase,
    purge=privacy.purge,
    cli=cli.register,
)
