"""{{ delta|duration }}: a timedelta in words, "15 minutes" or "1 hour, 30 minutes"."""

from datetime import datetime, timedelta

from django import template
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def duration(delta: timedelta | None) -> str:
    if not isinstance(delta, timedelta) or delta <= timedelta(0):
        return ""
    now = datetime(2000, 1, 1)
    return timesince(now - delta, now, depth=2)
