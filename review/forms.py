"""The pages' forms. They read and check what a person sent; the services decide and
write (review/services/, generation.services), and the views put the two together.

A form's errors are worded for the person at the page, and each names its field
where it has one, so the template shows it next to that field.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django import forms

from generation import languages
from generation.errors import ServiceError
from generation.models import CustomerSource, GenerationRun, Import, Prompt, Variant
from review import queue as q

# A page holds 20 variants; this only bounds what a hand-made request can ask.
BULK_MAX = 100


def errors_text(form: forms.Form, *, labels: bool = True) -> str:
    """A form's errors in one line, each after its field's name (`labels`): for a page
    region that shows one message (a partial the studio swaps in, a queue row)."""
    parts = []
    for name, errors in form.errors.items():
        label = f"{form[name].label}: " if labels and name in form.fields else ""
        parts += [f"{label}{error}" for error in errors]
    return "; ".join(parts)


def add_service_error(form: forms.Form, exc: ServiceError) -> None:
    """A service's refusal on the form, beside the field it names when the form has
    that field, else above the form (the services validate what forms cannot: a
    prompt without a version, a budget the model has no price for)."""
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


class ListField(forms.Field):
    """Every value of a repeated field (ids=1&ids=2), each cleaned by `base`."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "too_many": "At most %(max)d values",
        "invalid_item": "%(value)s: %(error)s",
    }

    def __init__(self, base: forms.Field, *, max_items: int, **kwargs) -> None:
        self.base, self.max_items = base, max_items
        super().__init__(**kwargs)

    def to_python(self, value) -> list:
        if value in self.empty_values:
            return []
        values = [value] if isinstance(value, str) else list(value)
        # Counted before any is read, so a long list costs nothing.
        if len(values) > self.max_items:
            raise forms.ValidationError(
                self.error_messages["too_many"], code="too_many", params={"max": self.max_items}
            )
        cleaned = []
        for item in values:
            try:
                cleaned.append(self.base.clean(item))
            except forms.ValidationError as exc:
                raise forms.ValidationError(
                    self.error_messages["invalid_item"],
                    code="invalid_item",
                    params={"value": repr(str(item)[:40]), "error": " ".join(exc.messages)},
                ) from None
        return cleaned


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


# The view a decision form sits in, which the answer re-renders: a queue row, the
# focus view, or the queue's "last decision" bar.
DECISION_VIEWS = [("row", "a queue row"), ("focus", "the focus view"), ("queue", "the queue")]


class DecisionForm(forms.Form):
    """What every decision form of the queue and the focus view posts (undo: `view` only)."""

    view = forms.ChoiceField(choices=DECISION_VIEWS, required=False)
    # The revision the reviewer saw; none sent, none checked.
    revision = forms.IntegerField(required=False, min_value=0)


class ApproveForm(DecisionForm):
    # Unchanged or empty: the model's text is approved as it is (None).
    text = forms.CharField(required=False, strip=False, empty_value=None)


class RegenerateForm(DecisionForm):
    note = forms.CharField(required=False, strip=False)


class ReasonForm(forms.Form):
    """A reason for rejecting: one of q.REJECT_REASONS, or words, or both; cleaned into
    the one reason recorded. An empty one is left to the service to refuse."""

    reason = forms.CharField(required=False)
    detail = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        cleaned["reason"] = q.reject_reason(cleaned.get("reason", ""), cleaned.get("detail", ""))
        return cleaned


class RejectForm(ReasonForm, DecisionForm):
    pass


class BulkForm(ReasonForm):
    """Approve or reject the ticked variants: `ids`, and `rev-<id>` per variant (the
    revision the reviewer saw; none sent, none checked)."""

    ids = ListField(
        forms.IntegerField(min_value=1),
        max_items=BULK_MAX,
        error_messages={
            "required": "Select at least one variant first",
            "too_many": "Decide at most %(max)d variants at once",
            "invalid_item": "Variants are named by number, not %(value)s",
        },
    )
    # approve or reject; anything else is refused by services.variants_decide.
    action = forms.CharField(required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        revision = forms.IntegerField(min_value=0)
        revisions = {}
        for pk in cleaned.get("ids", []):
            raw = self.data.get(f"rev-{pk}", "")
            if not raw.strip():
                continue
            try:
                revisions[pk] = revision.clean(raw)
            except forms.ValidationError:
                self.add_error(None, f"Variant {pk}: the revision {raw[:40]!r} is not a number")
        cleaned["revisions"] = revisions
        return cleaned


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


# --- runs ---------------------------------------------------------------------------------


# GenerationRun.budget holds 14 digits, 6 of them after the point: a bigger budget would
# be refused by the database (PostgreSQL) rather than here.
BUDGET_LIMIT = Decimal(10) ** 8


class BudgetForm(forms.Form):
    """A run's budget in US dollars; empty: none."""

    budget = forms.CharField(required=False)

    def clean_budget(self) -> Decimal | None:
        text = self.cleaned_data["budget"]
        if not text:
            return None
        try:
            budget = Decimal(text)
        except InvalidOperation:
            budget = Decimal("NaN")
        if not budget.is_finite():
            raise forms.ValidationError(f"The budget must be a number of dollars, not '{text}'")
        if abs(budget) >= BUDGET_LIMIT:
            raise forms.ValidationError(f"The budget must be under ${BUDGET_LIMIT:,}")
        return budget


class RunForm(BudgetForm):
    """A new run: the prompt (its current version) and an optional budget. The first
    post shows the estimate; `confirm` starts it."""

    prompt = forms.ModelChoiceField(
        queryset=Prompt.objects.all(),
        to_field_name="slug",
        error_messages={
            "required": "Choose a prompt",
            "invalid_choice": "Unknown prompt '%(value)s'",
        },
    )
    confirm = forms.BooleanField(required=False)
    field_order = ["prompt", "budget", "confirm"]


class RetryVariantForm(forms.Form):
    """One variant of `run` to write again."""

    def __init__(self, *args, run: GenerationRun, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["variant"] = forms.ModelChoiceField(
            queryset=Variant.objects.filter(run=run),
            error_messages={
                "required": "Name the variant to retry",
                "invalid_choice": "The run has no variant %(value)s",
            },
        )


# --- metrics ------------------------------------------------------------------------------


class FlagForm(forms.Form):
    """The prompt whose underperforming variants to flag now."""

    prompt = forms.ModelChoiceField(queryset=Prompt.objects.all(), to_field_name="slug")


# --- segments -----------------------------------------------------------------------------

OPERATORS = {"is": "is", "one_of": "is one of", "range": "is between"}
# Blank rows the builder offers below a segment's rules (at least one).
RULE_ROWS = 4
# Rows a builder may post; a segment needs a handful.
RULE_ROWS_MAX = 50


def _scalar(text: str) -> str | int | float:
    """A typed value: whole numbers and decimals as numbers, anything else as text."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text
    return int(number) if number.is_integer() and "." not in text else number


def rule_rows(rules: dict) -> list[dict]:
    """The builder's rows that show `rules` (the formset's initial data)."""
    rows: list[dict] = []
    for attribute, rule in rules.items():
        if isinstance(rule, dict):
            lower = rule.get("gte", rule.get("gt", ""))
            upper = rule.get("lt", rule.get("lte", ""))
            rows.append({"attribute": attribute, "op": "range", "value": lower, "upper": upper})
        elif isinstance(rule, list):
            value = ", ".join(map(str, rule))
            rows.append({"attribute": attribute, "op": "one_of", "value": value})
        else:
            rows.append({"attribute": attribute, "op": "is", "value": rule})
    return rows


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=255, error_messages={"required": "Give the segment a name"})


class RuleRowForm(forms.Form):
    """One row of the segment builder: an attribute, an operator and a value. "One of"
    takes values separated by commas; "between" takes a lower bound (`value`,
    included) and an upper bound (`upper`, excluded), either may be empty. A row
    without an attribute is left out, whatever else it holds."""

    attribute = forms.CharField(required=False)
    # Not a ChoiceField: an operator is only checked in a row that has an attribute.
    op = forms.CharField(
        required=False, initial="is", widget=forms.Select(choices=OPERATORS.items())
    )
    value = forms.CharField(required=False)
    upper = forms.CharField(required=False)

    def __init__(self, *args, number: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.number = number  # counted from 1, as the page labels the rows

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        attribute = cleaned.get("attribute")
        if not attribute or self.errors:
            return cleaned
        op, value, upper = cleaned["op"], cleaned["value"], cleaned["upper"]
        rule: str | list | dict
        if op == "one_of":
            rule = [v.strip() for v in value.split(",") if v.strip()]
            if not rule:
                raise forms.ValidationError("give the values, separated by commas")
        elif op == "range":
            rule = {}
            if value:
                rule["gte"] = _scalar(value)
            if upper:
                rule["lt"] = _scalar(upper)
            if not rule:
                raise forms.ValidationError("give a lower bound, an upper bound or both")
        elif op == "is":
            if not value:
                raise forms.ValidationError(f"give the value '{attribute}' must have")
            rule = value
        else:
            raise forms.ValidationError(f"unknown operator {op!r}")
        cleaned["rule"] = (attribute, rule)
        return cleaned

    def messages(self) -> list[str]:
        """The row's errors, each naming the row ("Rule 2: ...")."""
        return [f"Rule {self.number}: {e}" for errors in self.errors.values() for e in errors]


class BaseRuleFormSet(forms.BaseFormSet):
    """The builder's rows (posted as rule-0-attribute, rule-0-op, ...); once valid,
    `rules` holds what they describe: {attribute: value, list of values or bounds}."""

    default_error_messages = {"too_many_forms": "At most %(num)d rules"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rules: dict = {}

    @classmethod
    def get_default_prefix(cls) -> str:
        return "rule"

    @classmethod
    def for_rules(cls, rules: dict) -> BaseRuleFormSet:
        """The unbound rows of a segment's rules, then blank ones to add rules in."""
        rows = rule_rows(rules)
        formset = cls(initial=rows)
        formset.extra = max(RULE_ROWS - len(rows), 1)
        return formset

    def get_form_kwargs(self, index: int | None) -> dict:
        return {"number": None if index is None else index + 1}

    def clean(self) -> None:
        self.rules = {}
        for form in self.forms:
            if not form.is_valid() or "rule" not in form.cleaned_data:
                continue
            attribute, rule = form.cleaned_data["rule"]
            if attribute in self.rules:
                form.add_error("attribute", f"'{attribute}' already has a rule")
                continue
            self.rules[attribute] = rule
        if not self.rules and not any(self.errors) and self.management_form.is_valid():
            raise forms.ValidationError(
                "Give at least one rule: an attribute and what its value must be"
            )

    def messages(self) -> list[str]:
        """Every error, the rows' naming their row: for the member count's region."""
        return [*self.non_form_errors(), *(m for form in self.forms for m in form.messages())]


# formset_factory makes a subclass of `formset`; its type only says BaseFormSet.
RuleFormSet = cast(
    "type[BaseRuleFormSet]",
    forms.formset_factory(
        RuleRowForm,
        formset=BaseRuleFormSet,
        extra=RULE_ROWS,
        max_num=RULE_ROWS_MAX,
        absolute_max=RULE_ROWS_MAX,
        validate_max=True,
    ),
)


# Attribute names a form may list (the segments to generate by, a prompt's allowlist):
# the pages offer the customers' attribute names; this bounds a hand-made request.
ATTRIBUTES_MAX = 1000


class SegmentsGenerateForm(forms.Form):
    """One segment per combination of the values of the attributes named in `by`."""

    by = ListField(forms.CharField(), max_items=ATTRIBUTES_MAX, required=False)


# --- a prompt's privacy page --------------------------------------------------------------


class PromptLanguagesForm(forms.Form):
    """The languages a prompt writes in (tags separated by commas; none: every language
    at least `language_min_share` percent of a segment's members read)."""

    languages = forms.CharField(required=False)
    language_min_share = forms.IntegerField(required=False)

    def clean_languages(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data["languages"].split(",") if t.strip()]


class PromptPolicyForm(forms.Form):
    # The service names the policies and refuses any other.
    review_policy = forms.CharField(required=False)
    review_sample_percent = forms.IntegerField(required=False)


class PromptAllowlistForm(forms.Form):
    """The customer attributes a prompt may send (none ticked: every one not personal)."""

    allowed = ListField(forms.CharField(), max_items=ATTRIBUTES_MAX, required=False)


# --- imports ------------------------------------------------------------------------------

KIND_MESSAGE = "Choose what the file holds: a catalog or customers."


class ImportForm(forms.Form):
    """An upload to record for a worker: what it holds, the file, and for customers
    the source whose column mapping reads it and whether to skip bad rows."""

    kind = forms.ChoiceField(
        choices=Import.Kind.choices,
        error_messages={"required": KIND_MESSAGE, "invalid_choice": KIND_MESSAGE},
    )
    # An empty file is the service's to refuse, naming it.
    file = forms.FileField(
        allow_empty_file=True, error_messages={"required": "Choose a file to import."}
    )
    source = forms.CharField(required=False)
    skip_invalid = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        """The source is read for customers only (a catalog has no column mapping)."""
        super().clean()
        cleaned = self.cleaned_data
        slug = cleaned.get("source", "")
        cleaned["source"] = None
        if cleaned.get("kind") == Import.Kind.CUSTOMERS and slug:
            cleaned["source"] = CustomerSource.objects.filter(slug=slug).first()
            if cleaned["source"] is None:
                self.add_error("source", f"Unknown source '{slug}'.")
        return cleaned
