"""Public signals for integrators. Each is sent once per transition, by the winner.

Receivers get ``sender=BillingRequest`` and ``billing_request`` (the instance, as it is
after the transition), and run after the transaction that made the change commits.
They are sent with ``send_robust``: a receiver that raises is logged (logger
``wagtail_client_billing.billing``, with the traceback) and never undoes the change,
fails the page or the webhook, or keeps the client's email or other receivers waiting.

- ``billing_request_created``: a request was created and its Checkout Session made.
- ``billing_request_paid``: Stripe confirmed the payment (``late`` is True when the
  request had already expired or been deleted: money taken is never hidden).
- ``billing_request_expired``: the request expired unpaid.
- ``billing_request_deleted``: someone deleted (withdrew) the request.
"""

from django.dispatch import Signal

billing_request_created = Signal()
billing_request_paid = Signal()
billing_request_expired = Signal()
billing_request_deleted = Signal()
