"""Data the end-to-end template database gets after ``load_demo_data``.

Run in the example project by ``manage.py shell -c "from tests.e2e.seed import run; run()"``:
a second superuser whose Wagtail admin speaks French, for the French journey. The
bakery's site stays in the project's locale (English, as a project without Wagtail's
internationalisation has it): the journey makes its clients French in its Email settings.
"""

from __future__ import annotations

import os

FRENCH_ADMIN = "admin-fr"
FRENCH_SITE_HOSTNAME = "bakery.localhost"


def run() -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from wagtail.users.models import UserProfile

    with transaction.atomic():
        user = get_user_model().objects.create_superuser(
            FRENCH_ADMIN, f"{FRENCH_ADMIN}@agency.localhost", os.environ["WCB_E2E_PASSWORD"]
        )
        profile = UserProfile.get_for_user(user)
        profile.preferred_language = "fr"
        profile.save()
    print(f"Seeded {FRENCH_ADMIN} (fr).")
