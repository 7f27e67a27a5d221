"""Control commands for what follows a payment: refunds and disputes made outside the
API (Stripe's Dashboard, the cardholder's bank), and pending refunds.

Mixed into :class:`~.simulator.StripeSimulator`; each ``@command`` is also a control
route and a :class:`~.remote.RemoteSimulator` method, as the others.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import payments, renewals
from .control import command
from .engine import RequestInfo
from .store import new_id

if TYPE_CHECKING:
    from .engine import Engine


class BillingCommands:
    """Refunds, disputes, failing renewals and the billing portal's card update."""

    engine: Engine

    @command()
    def refund(
        self, payment_intent: str, amount: int | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        """Refund a payment (a ``pi_`` or ``ch_`` id) as Stripe's Dashboard does: the same
        events as the API (``refund.created``, ``charge.refunded``), no metadata, no
        idempotency key. ``amount`` defaults to what remains."""
        engine = self.engine
        with engine.lock:
            key = "charge" if payment_intent.startswith("ch_") else "payment_intent"
            record = payments.charge_to_refund(engine, None, **{key: payment_intent})
            if reason is not None and reason not in payments.REFUND_REASONS:
                raise ValueError(f"reason must be one of {', '.join(payments.REFUND_REASONS)}")
            refund = payments.refund(
                engine,
                record,
                amount=amount,
                reason=reason,
                metadata={},
                request=RequestInfo(id=new_id("req")),
            )
            return copy.deepcopy(refund)

    @command()
    def delay_next_refunds(self, count: int = 1) -> None:
        """The next ``count`` refunds stay ``pending`` until ``settle_refund``."""
        with self.engine.lock:
            self.engine.store.held_refunds = count

    @command()
    def settle_refund(self, refund_id: str, succeed: bool = True) -> dict[str, Any]:
        """A pending refund ``succeeded`` or ``failed``; emits ``refund.updated``."""
        with self.engine.lock:
            return copy.deepcopy(payments.settle_refund(self.engine, refund_id, succeed))

    @command()
    def create_dispute(self, payment_intent: str, reason: str = "fraudulent") -> dict[str, Any]:
        """The cardholder's bank disputes a payment (a ``pi_`` or ``ch_`` id): a dispute
        ``needs_response``, the charge ``disputed``; emits ``charge.dispute.created``."""
        with self.engine.lock:
            return copy.deepcopy(payments.create_dispute(self.engine, payment_intent, reason))

    @command()
    def close_dispute(self, dispute_id: str, won: bool) -> dict[str, Any]:
        """The bank decides a dispute, ``won`` or lost; emits ``charge.dispute.closed``."""
        with self.engine.lock:
            return copy.deepcopy(payments.close_dispute(self.engine, dispute_id, won))

    @command()
    def fail_renewals(self, customer_or_subscription: str, fail: bool = True) -> None:
        """The card of a customer (``cus_``) or of one subscription (``sub_``) is declined
        at the next renewals (``invoice.payment_failed``, the subscription ``past_due``);
        ``fail=False`` makes it pay again (without paying what is open: see
        ``update_payment_method``)."""
        with self.engine.lock:
            if fail:
                self.engine.store.failing_cards.add(customer_or_subscription)
            else:
                self.engine.store.failing_cards.discard(customer_or_subscription)

    @command()
    def update_payment_method(self, customer: str) -> list[dict[str, Any]]:
        """What "Update payment method" in the billing portal does: the customer's card
        works again and each open invoice of its subscriptions is paid now
        (``invoice.paid``; past-due subscriptions back to ``active``). Returns them."""
        with self.engine.lock:
            if self.engine.store.find(customer, "customer") is None:
                raise ValueError(f"No such customer: {customer!r}")
            return copy.deepcopy(renewals.update_payment_method(self.engine, customer))
