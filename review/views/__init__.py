"""The HTML and HTMX pages, one module per page family (review/urls.py routes them):

- queue.py: the review queue (with the first-run checklist, review/setup.py), the focus
  view of one variant (its experiment panel), decisions, bulk, undo
- runs.py: generation runs (the run builder, follow, cancel, resume, retry)
- metrics.py: the engagement dashboard, its CSV export, flagging underperformers
- experiments.py: experiments on a slot (list, page, start, arms, stop)
- studio.py: brands, the prompt list, new prompts from starters, copies, the studio
- segments.py: the segment builder, and what of the audience a prompt sends
- imports.py: catalog and customer imports, and mapping a CDP export's columns
- catalog.py: the products and customers pages (and a customer's erasure)
- tokens.py: API tokens (create, shown once; revoke)
- account.py: the reviewer's own profile

Every view is thin: a permission helper, a form from review/forms.py, one service call,
a render or a redirect. This module holds only what several of them share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Every join costs PostgreSQL planning time (eight tables made the queue page's plan
# take 30 ms for a 0.6 ms query): join only what the templates show. The queue and
# focus views and the REST API's variant views all select these.
VARIANT_RELATED = ("product", "segment", "customer", "prompt_version__prompt")


class HtmxHttpRequest(HttpRequest):
    """A request to a page: django-htmx's middleware gave it `.htmx`, and
    login_required (on every view here) a signed-in `user`."""

    htmx: HtmxDetails
    user: User  # narrower than HttpRequest's: login_required


def partial(request: HtmxHttpRequest) -> bool:
    """Answer with the swapped region only? A history restore (back button, cache
    miss) is an HTMX request that asks for the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request
