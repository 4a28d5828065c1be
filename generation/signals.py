"""What generation tells the rest of the project, without knowing who listens.

`generation` never imports `review` (an import-linter contract in `make lint`); where
review must act on something generation did, generation sends one of these and
review's AppConfig.ready connects the receivers, in one place (review/apps.py).
"""

from django.dispatch import Signal

# Fresh copy was written, inside the engine's write transaction: `variant_ids`, each
# in review. Review applies each prompt's review policy (review/policy.py).
variants_written = Signal()

# What a slot shows may have changed without a model save (bulk writes: imports,
# a prompt's settings): `prompt_id`, `product_id`, `segment_id`, each None for all.
# Review's live-copy snapshot drops what it holds (review/delivery.py).
live_copy_changed = Signal()
