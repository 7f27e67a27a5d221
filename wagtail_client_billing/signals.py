"""Public signals (see docs/signals.md): sent once per transition, by the winner, after
commit, with ``send_robust``; receivers get ``sender=BillingRequest`` and ``billing_request``
(``billing_request_paid`` also ``late``: the request had already expired or been deleted)."""

from django.dispatch import Signal

billing_request_created = Signal()
billing_request_paid = Signal()
billing_request_expired = Signal()
billing_request_deleted = Signal()
