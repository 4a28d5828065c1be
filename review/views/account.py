"""The reviewer's own settings: the languages they review."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from review.forms import ProfileForm
from review.models import ReviewerProfile
from review.views import HtmxHttpRequest


@login_required
def profile(request: HtmxHttpRequest) -> HttpResponse:
    """A reviewer names the languages they review; their default queue shows those first."""
    profile, _ = ReviewerProfile.objects.get_or_create(user=request.user)
    saved = False
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            profile.languages = form.cleaned_data["languages"]
            profile.save(update_fields=["languages"])
            saved = True
    else:
        form = ProfileForm(initial={"languages": ", ".join(profile.languages)})
    status = 400 if form.is_bound and not form.is_valid() else 200
    context = {"form": form, "profile": profile, "saved": saved}
    return render(request, "review/profile.html", context, status=status)
