"""Writes with side effects in the review domain, one module per noun. Views, the
REST API, commands and the review policy call these; `from review import services`
then `services.variant_approve(...)` works as it always did.

- decisions: approve (with an edit), reject, regenerate, bulk, undo, and `_publish`,
  the one way copy goes live;
- engagement: events posted back by delivery systems;
- experiments: experiments on a slot (start, arms, stop, promote), the counts and
  analysis the pages show, and the review beat runs (pause losers, propose winners,
  reweigh bandits), wear-out and challengers; import it as a module
  (`from review.services import experiments`);
- transfer: exporting decisions and importing them on another instance.
"""

from review.services.decisions import (
    UNDOABLE,
    BulkResult,
    DecisionError,
    SlotTaken,
    StaleDecision,
    decision_undo,
    variant_approve,
    variant_reject,
    variant_request_regeneration,
    variants_decide,
)
from review.services.engagement import EngagementError, engagement_record
from review.services.transfer import (
    DECISIONS_FORMAT,
    DECISIONS_VERSION,
    DecisionImport,
    DecisionImportError,
    decisions_export,
    decisions_import,
)

__all__ = [
    "DECISIONS_FORMAT",
    "DECISIONS_VERSION",
    "UNDOABLE",
    "BulkResult",
    "DecisionError",
    "DecisionImport",
    "DecisionImportError",
    "EngagementError",
    "SlotTaken",
    "StaleDecision",
    "decision_undo",
    "decisions_export",
    "decisions_import",
    "engagement_record",
    "variant_approve",
    "variant_reject",
    "variant_request_regeneration",
    "variants_decide",
]
