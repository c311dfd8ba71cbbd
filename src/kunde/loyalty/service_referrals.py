"""Referral abuse guards: no points for referring yourself, one award per referred person.

An earn rule with ``referee`` (identifier kind -> payload path, e.g. ``{user_id:
properties.referred_user_id, email: properties.referred_email}``) is a referral
rule. Before it awards, the referred identity is checked against the identity
graph (`ProfileService`):

* an identifier that resolves to the referrer's own (live, merged) customer,
* an email or phone that is the referrer's own (an identifier or trait of theirs),
* a referred customer who shares an email or phone with the referrer,

earn nothing; the reason is written to the member's history (a zero-point
``refused`` entry) and shown by the simulation endpoint. A referral that names
nobody earns nothing either. An accepted referral's cause is the referred person
(their live customer id, or the keyed hash of the identifier when unknown), so a
friend referred twice — by one member or by several — counts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kunde.core.errors import NotFound
from kunde.loyalty.models import EarnRule
from kunde.loyalty.rules import MISSING, lookup
from kunde.privacy.vault import normalise_identifier

if TYPE_CHECKING:
    from kunde.kernel import Kernel

CONTACT_KINDS = ("email", "phone")


@dataclass(frozen=True)
class ReferralVerdict:
    refusal: str | None
    cause_id: str | None  # the referred person, when accepted


def referees(rule: EarnRule, payload: dict[str, Any]) -> dict[str, str]:
    """The referred person's identifiers named by the event, by kind."""
    out: dict[str, str] = {}
    for kind, path in rule.referee.items():
        value = lookup(payload, path)
        if value is not MISSING and isinstance(value, str | int) and str(value).strip():
            out[kind] = str(value).strip()
    return out


class ReferralGuard:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def check(self, referrer: str, rule: EarnRule, payload: dict[str, Any]
                    ) -> ReferralVerdict:
        named = referees(rule, payload)
        if not named:
            return ReferralVerdict("the referral does not say who was referred "
                                   f"({', '.join(rule.referee.values())} missing)", None)
        profiles = self._profiles()
        me = await profiles.canonical_id(referrer) if profiles else referrer
        if referrer in named.values() or me in named.values():
            return ReferralVerdict("self-referral: the referred identity is the referrer", None)
        mine = await self._contacts(me) if profiles else set()
        owner: str | None = None
        for kind, value in named.items():
            found = await profiles.resolve(kind, value) if profiles else None
            if found is not None and found == me:
                return ReferralVerdict(
                    f"self-referral: the referred {kind} belongs to the referrer's own "
                    "customer record", None)
            if kind in CONTACT_KINDS and (kind, normalise_identifier(kind, value)) in mine:
                return ReferralVerdict(f"self-referral: the referred {kind} is the "
                                       f"referrer's own {kind}", None)
            owner = owner or found
        if owner is not None:
            shared = sorted({k for k, _ in mine & await self._contacts(owner)})
            if shared:
                return ReferralVerdict(
                    "self-referral: the referred customer shares the referrer's "
                    + " and ".join(shared), None)
        kind, value = next(iter(sorted(named.items())))
        who = owner or self.kernel.vault.blind_index(kind, value)
        return ReferralVerdict(None, f"referee:{who}")

    def _profiles(self) -> Any:
        try:
            from kunde.profiles.service import ProfileService
        except ImportError:  # profiles not installed: only the plain comparison above
            return None
        return self.kernel.service(ProfileService)

    async def _contacts(self, customer_id: str) -> set[tuple[str, str]]:
        """The customer's emails and phones (identifiers and traits), normalised."""
        profiles = self._profiles()
        out: set[tuple[str, str]] = set()
        try:
            for ident in await profiles.identities(customer_id):
                if ident["kind"] in CONTACT_KINDS and ident["value"]:
                    out.add((ident["kind"], normalise_identifier(ident["kind"], ident["value"])))
            profile = await profiles.get_profile(customer_id)
        except NotFound:
            return out
        for kind in CONTACT_KINDS:
            value = profile.get(kind)
            if isinstance(value, str) and value.strip():
                out.add((kind, normalise_identifier(kind, value)))
        return out
