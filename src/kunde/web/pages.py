"""Helpers for server-rendered pages: the layout context every console page needs."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from kunde.access.guard import current_principal
from kunde.core.errors import Forbidden
from kunde.features import Feature, NavItem


def nav_for(request: Request[Any, Any, Any]) -> list[NavItem]:
    principal = current_principal(request)
    features: list[Feature] = request.app.state.features
    items = [item for f in features for item in f.nav]
    if principal is None:
        return []
    return [i for i in items if principal.can(i.permission)]


def page(request: Request[Any, Any, Any], template: str, **context: Any) -> Template:
    """Render a console page with the navigation and the current user."""
    principal = current_principal(request)
    return Template(
        template_name=template,
        context={"nav": nav_for(request), "user": principal, "path": request.url.path,
                 **context},
    )


def portal_page(request: Request[Any, Any, Any], template: str, **context: Any) -> Template:
    """Render a customer-portal page; only a customer principal may see one."""
    principal = current_principal(request)
    if principal is None or principal.kind != "customer":
        raise Forbidden("the portal is for customers; open the link from your email",
                        code="portal.customers_only")
    features: list[Feature] = request.app.state.features
    nav = [item for f in features for item in f.portal_nav]
    return Template(
        template_name=template,
        context={"portal_nav": nav, "customer_id": principal.customer_id,
                 "path": request.url.path, **context},
    )
