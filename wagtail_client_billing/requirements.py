"""What Stripe still needs before an account can take payments, in words: Stripe reports
field codes (``individual.dob.day``, ``tos_acceptance.ip``, ``person_1Ab.address.city``);
an agency reads "Account holder: date of birth, address"."""

from __future__ import annotations

import re

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

#: Who or what a code is about (its first part), in the order they are listed.
WHOSE: dict[str, Promise] = {
    "business_type": _("Type of business"),
    "business_profile": _("Business"),
    "company": _("Company"),
    "individual": _("Account holder"),
    "representative": _("Representative"),
    "person": _("A person of the company"),
    "owners": _("Owners"),
    "directors": _("Directors"),
    "executives": _("Executives"),
    "external_account": _("Bank account for payouts"),
    "tos_acceptance": _("Acceptance of Stripe's services agreement"),
    "settings": _("Payment settings"),
}
#: What about them (the code's next part); the whole code when nothing else says it.
WHAT: dict[str, Promise] = {
    "first_name": _("name"),
    "last_name": _("name"),
    "name": _("name"),
    "dob": _("date of birth"),
    "address": _("address"),
    "email": _("email address"),
    "phone": _("phone number"),
    "support_phone": _("support phone number"),
    "id_number": _("ID number"),
    "ssn_last_4": _("ID number"),
    "tax_id": _("tax ID"),
    "vat_id": _("VAT number"),
    "verification": _("identity document"),
    "relationship": _("role in the company"),
    "title": _("role in the company"),
    "url": _("website"),
    "mcc": _("business category"),
    "product_description": _("description of what is sold"),
    "owners_provided": _("its owners"),
    "directors_provided": _("its directors"),
    "executives_provided": _("its executives"),
    "payments": _("statement descriptor"),
}
PERSON = re.compile(r"^person_[A-Za-z0-9]+$")
#: Asked as a whole (their parts, ``tos_acceptance.ip``, say nothing more to the agency).
WHOLE = frozenset({"business_type", "external_account", "tos_acceptance"})


def in_words(codes: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """(who or what, [what about them], [Stripe's codes]) for each group, in a fixed order;
    a code nothing here knows is its own group, so that nothing Stripe asks is left out."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for code in codes:
        if not isinstance(code, str):
            continue
        first, *rest = code.split(".")
        first = "person" if PERSON.match(first) else first
        if first not in WHOSE:
            groups.setdefault(code, ([], []))[1].append(code)
            continue
        items, raw = groups.setdefault(first, ([], []))
        raw.append(code)
        if rest and first not in WHOLE:
            # A field new to us, of a known part: Stripe's own words.
            what = str(WHAT.get(rest[0], code))
            if what not in items:
                items.append(what)
    order = list(WHOSE)
    keys = sorted(groups, key=lambda key: order.index(key) if key in order else len(order))
    return [(str(WHOSE.get(key, key)), *groups[key]) for key in keys]
