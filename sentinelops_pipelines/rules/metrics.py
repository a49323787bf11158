"""How the rules speak of the rollup metrics: the Stripe event types behind each (a finding's
sample events) and the words a title uses for it."""

from __future__ import annotations

FAILURE_TYPES = ("charge.failed", "payment_intent.payment_failed")
# Failures that come from the path to the bank, not from the card or its holder: as a charge's
# failure code or decline code (outcome.reason), or a PaymentIntent's last_payment_error.
PROCESSING_CODES = frozenset(
    {"processing_error", "api_connection_error", "issuer_not_available", "try_again_later",
     "reenter_transaction"}
)  # fmt: skip
PAYMENT_TYPES = (*FAILURE_TYPES, "charge.succeeded", "payment_intent.succeeded")
METRIC_TYPES = {
    "refunds": ("charge.refunded", "refund.created"),
    "disputes": ("charge.dispute.created",),
    "subscriptions_cancelled": ("customer.subscription.deleted",),
    "subscriptions_created": ("customer.subscription.created",),
    "invoice_payments_failed": ("invoice.payment_failed",),
    "payments_failed": FAILURE_TYPES,
    "payments_failed_processing": FAILURE_TYPES,
    "payment_attempts": PAYMENT_TYPES,
}
LABELS = {
    "refunds": "refunds",
    "disputes": "disputes",
    "subscriptions_cancelled": "cancellations",
    "invoice_payments_failed": "failed invoice payments",
    "subscriptions_created": "new subscriptions",
    "payments_failed": "failed payments",
    "payments_failed_processing": "payments failed with processing errors",
    "payment_attempts": "payment attempts",
    "payments_succeeded": "successful payments",
    "events": "events",
}


def percent(share: float, digits: int = 0) -> str:
    return f"{share * 100:.{digits}f}%"
