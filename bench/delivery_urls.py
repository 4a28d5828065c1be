"""The project's URLs plus `/bench/bare/`: a constant JSON body of a live answer's size.

And `/bench/snapshot/`: which process answered and how many blocks of live copy it
holds, so the bench warms a server until every worker holds every block it serves.

What serving any JSON costs in this stack (gunicorn, Django's middleware, URL routing,
JSON encoding), with nothing of the live endpoint's own work: no token, no rate limit,
no query, no signing. The bench compares the live endpoint against it.
"""

import os

from django.http import HttpRequest, JsonResponse
from django.urls import path

from hyperpers import urls as project_urls

# Shaped and sized like a live answer (bench/delivery.py prints both sizes).
BARE_BODY = {
    "prompt": "bench-delivery",
    "product": "BD-000042",
    "segment": "bd-07",
    "customer": None,
    "variant_id": 123456,
    "prompt_version": 1,
    "source": "segment",
    "fallback": False,
    "fallback_reason": None,
    "text": (
        "Built for the miles you actually run: the Benchdelivery Trail Runner 42. The mesh "
        "upper drains fast after a stream crossing, so your feet stay light. A rock plate "
        "under the forefoot softens stony descents without dulling feel. 4 mm lugs bite into "
        "mud and loose gravel, and shed it again on the road. Priced at 129, it is a pair for "
        "the group that runs long. Lace up and see where the trail takes you."
    ),
    "exposure_id": "e1.1.43.8.0.123456:Qm9n2m0tY3i1Hq8fE4Jw6bXy0sPzR5uLkV7cA1dG2eT",
}


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse(BARE_BODY)


def snapshot(request: HttpRequest) -> JsonResponse:
    from review.delivery import snapshot as held

    return JsonResponse({"pid": os.getpid(), "blocks": len(held._blocks)})


# The project's patterns at the same level as the bare view's (not under an include of
# their own): a URL routes as it does in production, with no extra level to resolve.
urlpatterns = [
    path("bench/bare/", bare, name="bench-bare"),
    path("bench/snapshot/", snapshot, name="bench-snapshot"),
    *project_urls.urlpatterns,
]
