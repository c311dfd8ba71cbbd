from kunde.features import Feature, NavItem
from kunde.web.routes import (
    docs,
    figures,
    home,
    login,
    login_form,
    logout,
    openapi_json,
    portal_enter,
    portal_home,
    root,
)

FEATURE = Feature(
    name="web",
    routes=[root, login_form, login, logout, home, figures, openapi_json, docs, portal_enter,
            portal_home],
    nav=[NavItem("Home", "/console/", "console:view"),
         NavItem("API docs", "/docs", "console:view")],
)
