"""The exporter's digest and recipient figures, part of the catalogue (monitoring/metrics.py).

Digests sent and skipped, items per digest and recipients skipped are counted by the
ledger itself (herald.counters), in the transaction that does what they count, so they
are exact across every worker, the CLI and restarts; the exporter reads them at scrape
time and exports them as counters and a histogram. The lateness gauge is the most overdue
digest: a due schedule not yet claimed, or a claimed period not yet sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from herald.digests import collect
from herald.recipients import RECIPIENTS_SKIPPED as RECIPIENTS_KEY
from herald.recipients import SKIP_REASONS

DIGESTS_SENT = "herald_digests_sent_total"
DIGESTS_SKIPPED = "herald_digests_skipped_total"
DIGEST_ITEMS = "herald_digest_items"
DIGEST_LATENESS = "herald_digest_lateness_seconds"
RECIPIENTS_SKIPPED = "herald_recipients_skipped_total"

#: ``herald_digests_skipped_total{reason}``: a period with nothing new, or whose recipient
#: is muted for the route.
DIGEST_SKIP_REASONS: tuple[str, ...] = ("empty", "muted")
#: ``herald_recipients_skipped_total{reason}``: a row's recipient_fields column held no
#: address, or not a valid one; or the recipient is muted.
RECIPIENT_SKIP_REASONS: tuple[str, ...] = tuple(SKIP_REASONS)

HELP: dict[str, str] = {
    DIGESTS_SENT: "Digest emails the SMTP server accepted (counted by the ledger).",
    DIGESTS_SKIPPED: (
        "Digest periods that sent nothing: empty (nothing new; the schedule still advanced) "
        "or muted (the recipient is muted for the route)."
    ),
    DIGEST_ITEMS: "Notifications in each digest sent (listed or counted in 'and N more').",
    DIGEST_LATENESS: (
        "Seconds the most overdue digest is late: a due schedule not claimed yet, or a "
        "claimed period not sent yet; 0 when none is."
    ),
    RECIPIENTS_SKIPPED: (
        "Recipients a change did not go to, by reason: no_address or invalid_address in a "
        "recipient_fields column, or muted (herald.recipient_skips says which and why)."
    ),
}
LABELS: dict[str, tuple[str, ...]] = {
    DIGESTS_SENT: (),
    DIGESTS_SKIPPED: ("reason",),
    DIGEST_ITEMS: (),
    DIGEST_LATENESS: (),
    RECIPIENTS_SKIPPED: ("reason",),
}
TYPES: dict[str, str] = {
    DIGESTS_SENT: "counter",
    DIGESTS_SKIPPED: "counter",
    DIGEST_ITEMS: "histogram",
    DIGEST_LATENESS: "gauge",
    RECIPIENTS_SKIPPED: "counter",
}
METRICS: tuple[str, ...] = tuple(HELP)


def families(counters: Mapping[tuple[str, str], float], lateness: float) -> list[Metric]:
    """The families for one scrape from herald.counters' rows ((metric, label) -> value),
    every known label set filled (0 when absent)."""
    sent = CounterMetricFamily(DIGESTS_SENT, HELP[DIGESTS_SENT])
    sent.add_metric([], counters.get((collect.DIGESTS_SENT, ""), 0.0))
    skipped = CounterMetricFamily(DIGESTS_SKIPPED, HELP[DIGESTS_SKIPPED], labels=["reason"])
    for reason in DIGEST_SKIP_REASONS:
        skipped.add_metric([reason], counters.get((collect.DIGESTS_SKIPPED, reason), 0.0))
    recipients = CounterMetricFamily(
        RECIPIENTS_SKIPPED, HELP[RECIPIENTS_SKIPPED], labels=["reason"]
    )
    for reason in RECIPIENT_SKIP_REASONS:
        recipients.add_metric([reason], counters.get((RECIPIENTS_KEY, reason), 0.0))
    buckets = [
        (label.removeprefix("le="), counters.get((collect.DIGEST_ITEMS, label), 0.0))
        for label in map(collect.bucket_label, collect.ITEM_BUCKETS)
    ]
    items = HistogramMetricFamily(
        DIGEST_ITEMS,
        HELP[DIGEST_ITEMS],
        buckets=buckets,
        sum_value=counters.get((collect.DIGEST_ITEMS, "sum"), 0.0),
    )
    late = GaugeMetricFamily(DIGEST_LATENESS, HELP[DIGEST_LATENESS])
    late.add_metric([], max(lateness, 0.0))
    return [sent, skipped, items, late, recipients]
