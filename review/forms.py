"""The pages' forms. They read and check what a person sent; the services decide and
write (review/services.py, generation.services), and the views put the two together.

A form's errors are worded for the person at the page, and each names its field
where it has one, so the template shows it next to that field.
"""

from __future__ import annotations

from django import forms

from generation import languages
from generation.models import Variant
from review import queue as q

# --- the review queue ------------------------------------------------------------------


class QueueFilters(forms.Form):
    """The queue's GET form. Invalid values are reported and left out, never a 400."""

    status = forms.ChoiceField(choices=Variant.Status.choices, required=False)
    prompt = forms.SlugField(required=False, max_length=100)
    product = forms.CharField(required=False, max_length=100, strip=True)
    segment = forms.SlugField(required=False, max_length=200)
    language = forms.CharField(required=False, max_length=35, strip=True)
    check = forms.ChoiceField(choices=[("", "any"), *q.CHECK_NAMES.items()], required=False)
    run = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    # Flagged by review.metrics: doing significantly worse than the base copy.
    underperforming = forms.BooleanField(required=False)

    def clean_language(self) -> str:
        value = self.cleaned_data.get("language", "")
        if not value:
            return ""
        if value.lower() in (q.MINE, q.ALL):
            return value.lower()
        try:
            return languages.language_tag(value)
        except languages.LanguageTagError as exc:
            raise forms.ValidationError(str(exc)) from None

    def values(self) -> dict:
        """The valid, non-empty filters; status defaults to in review."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        values = {k: cleaned[k] for k in q.FILTER_FIELDS if cleaned.get(k) not in (None, "", False)}
        return {"status": values.pop("status", Variant.Status.IN_REVIEW), **values}


# --- the reviewer's profile -------------------------------------------------------------

PROFILE_LANGUAGES_MAX = 20


class ProfileForm(forms.Form):
    languages = forms.CharField(
        required=False,
        max_length=400,
        help_text="BCP 47 tags, separated by commas: de, fr-CA. A language is reviewed "
        "whole: fr-CA takes fr and every regional fr. Empty: every language.",
    )

    def clean_languages(self) -> list[str]:
        raw = [t.strip() for t in self.cleaned_data["languages"].replace(";", ",").split(",")]
        tags = [t for t in raw if t]
        if len(tags) > PROFILE_LANGUAGES_MAX:
            raise forms.ValidationError(f"At most {PROFILE_LANGUAGES_MAX} languages")
        try:
            return list(dict.fromkeys(languages.language_tag(t) for t in tags))
        except languages.LanguageTagError as exc:
            raise forms.ValidationError(str(exc)) from None


# --- the brand voice and the prompt studio ----------------------------------------------


def _lines(text: str) -> list[str]:
    return text.splitlines()


class BrandForm(forms.Form):
    voice = forms.CharField(
        widget=forms.Textarea,
        error_messages={"required": "The brand voice cannot be empty"},
    )
    banned_phrases = forms.CharField(widget=forms.Textarea, required=False)
    protected_terms = forms.CharField(widget=forms.Textarea, required=False)

    def clean_banned_phrases(self) -> list[str]:
        return _lines(self.cleaned_data["banned_phrases"])

    def clean_protected_terms(self) -> list[str]:
        return _lines(self.cleaned_data["protected_terms"])


class DraftForm(forms.Form):
    template = forms.CharField(widget=forms.Textarea, strip=False)
    model = forms.CharField(max_length=120)
    temperature = forms.FloatField(min_value=0, max_value=2)
    note = forms.CharField(max_length=500, required=False)

    def clean_template(self) -> str:
        # Browsers send a textarea's line ends as CRLF; versions and their diffs use LF.
        return self.cleaned_data["template"].replace("\r\n", "\n")


def errors_text(form: forms.Form) -> str:
    """A form's errors in one line, each after its field's name: for a page region
    that shows one message (a partial the studio swaps in, a queue row)."""
    parts = []
    for name, errors in form.errors.items():
        label = f"{name.capitalize()}: " if name in form.fields else ""
        parts += [f"{label}{error}" for error in errors]
    return "; ".join(parts)
