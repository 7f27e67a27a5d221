"""Differences between the Wagtail versions we support, in one place."""

from __future__ import annotations

from typing import Any

from wagtail import VERSION as WAGTAIL_VERSION

# Wagtail 8 has a global registry of permission policies; 7.4 asks the viewset.
REGISTERS_PERMISSION_POLICIES = WAGTAIL_VERSION >= (8, 0)


def register_policy(model: type, policy: Any) -> None:
    """Register ``policy`` for ``model`` where Wagtail has a registry (8.0+)."""
    if REGISTERS_PERMISSION_POLICIES:
        from wagtail.permissions import register_permission_policy

        register_permission_policy(model, policy, exact_class=True)


class PolicyViewSetMixin:
    """Give a ``ModelViewSet`` the package's policy for its model on every Wagtail version."""

    policy: Any = None

    if not REGISTERS_PERMISSION_POLICIES:

        @property
        def permission_policy(self) -> Any:
            return self.policy
