"""The pages' forms. They read and check what a person sent; the services decide and
write (review/services/, generation.services), and the views put the two together.

A form's errors are worded for the person at the page, and each names its field
where it has one, so the template shows it next to that field.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django import forms
from django.db import models
from django.db.models import Q, QuerySet
from django.utils.text import slugify

from generation import languages
from generation.audience import ATTRIBUTE_RE, Mapping, MappingError
from generation.errors import ServiceError
from generation.mapping import COLUMNS_MAX
from generation.models import (
    SEGMENT_RULES_MAX,
    Brand,
    Customer,
    CustomerSource,
    GenerationRun,
    Import,
    Product,
    Prompt,
    Segment,
    Variant,
)
from generation.services import TRY_MAX_SAMPLES
from generation.services import messages as gen_messages
from review import queue as q
from review.experiments import allocation
from review.models import ApiToken, Experiment
from review.services import experiments as experiment_services

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
    revision = forms.IntegerField(required=False, min_value=0, max_value=2**63 - 1)


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
        # Bounded: `pk__in` has no overflow check (SQLite raises OverflowError).
        forms.IntegerField(min_value=1, max_value=2**63 - 1),
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
        revision = forms.IntegerField(min_value=0, max_value=2**63 - 1)
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


# The studio's editor is one HTML form: the draft above, the slot Preview renders
# (PreviewForm), the rows Try writes (SampleFormSet) and the examples for the next
# version (ExamplesForm). Each action reads the ones it needs.

SLOT_INCOMPLETE = "Choose both a product (its SKU) and a segment"


def _slot(
    form: forms.Form, product_field: str, segment_field: str
) -> tuple[Product, Segment] | None:
    """The product (by SKU) and segment (by slug) named by two of `form`'s fields, or
    None with the first thing wrong added to the form, in the order a person fixes
    them: a missing half (above the fields), then the SKU, then the segment."""
    sku, slug = form.cleaned_data[product_field], form.cleaned_data[segment_field]
    if not sku or not slug:
        form.add_error(None, SLOT_INCOMPLETE)
        return None
    product = Product.objects.filter(sku=sku).first()
    if product is None:
        form.add_error(product_field, f"No product with SKU '{sku}'")
        return None
    segment = Segment.objects.filter(slug=slug).first()
    if segment is None:
        form.add_error(segment_field, f"No segment '{slug}'")
        return None
    return product, segment


class PreviewForm(forms.Form):
    """What Preview renders: the editor's template on one slot. The template is the
    service's to check (an empty one too), as a save checks it; the model and the
    temperature play no part. Once valid, `slot` holds (product, segment)."""

    template = forms.CharField(required=False, strip=False)
    preview_product = forms.CharField(required=False)
    preview_segment = forms.CharField(required=False)

    def clean_template(self) -> str:
        return self.cleaned_data["template"].replace("\r\n", "\n")

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors:
            cleaned["slot"] = _slot(self, "preview_product", "preview_segment")
        return cleaned


class SampleRowForm(forms.Form):
    """One row of the samples Try writes: a product (its SKU) and a segment. A blank
    row is left out; a row with one of the two is refused."""

    sku = forms.CharField(required=False)
    segment = forms.CharField(required=False)

    def __init__(self, *args, number: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.number = number  # counted from 1, as the page labels the rows

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        cleaned["pair"] = None
        if (cleaned.get("sku") or cleaned.get("segment")) and not self.errors:
            cleaned["pair"] = _slot(self, "sku", "segment")
        return cleaned

    def messages(self) -> list[str]:
        """The row's errors, each naming the row ("Sample 2: ...")."""
        return [f"Sample {self.number}: {e}" for errors in self.errors.values() for e in errors]


# Rows the studio may post: the page offers TRY_MAX_SAMPLES; this bounds a hand-made
# request (each filled row costs two lookups).
SAMPLE_ROWS_MAX = 20


class _RowsFormSet(forms.BaseFormSet):
    """Rows that each name their own errors (a row form's `messages()`)."""

    def messages(self) -> list[str]:
        """Every error, the rows' naming their row: for the one region a page swaps."""
        return [*self.non_form_errors(), *(m for form in self.forms for m in form.messages())]


class BaseSampleFormSet(_RowsFormSet):
    """The sample rows (posted as sample-0-sku, sample-0-segment, ... with the sample-
    management form); once valid, `pairs` holds the filled rows' (product, segment) in
    order. None filled: the service picks the samples."""

    default_error_messages = {"too_many_forms": "At most %(num)d sample rows"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pairs: list[tuple[Product, Segment]] = []

    @classmethod
    def get_default_prefix(cls) -> str:
        return "sample"

    def get_form_kwargs(self, index: int | None) -> dict:
        return {"number": None if index is None else index + 1}

    def clean(self) -> None:
        rows = [form.cleaned_data for form in self.forms if form.is_valid()]
        self.pairs = [row["pair"] for row in rows if row.get("pair")]
        # A row is filled when anything but spaces was typed in it, valid or not.
        filled = sum(1 for form in self.forms if form.has_changed())
        if filled > TRY_MAX_SAMPLES:
            # The service's own refusal, in its words, before any row is written.
            raise forms.ValidationError(
                f"Try at most {TRY_MAX_SAMPLES} samples at a time, not {filled}"
            )


# formset_factory makes a subclass of `formset`; its type only says BaseFormSet.
SampleFormSet = cast(
    "type[BaseSampleFormSet]",
    forms.formset_factory(
        SampleRowForm,
        formset=BaseSampleFormSet,
        extra=TRY_MAX_SAMPLES,
        max_num=TRY_MAX_SAMPLES,  # the rows an unbound formset shows
        absolute_max=SAMPLE_ROWS_MAX,
    ),
)


class AsciiIntegerField(forms.IntegerField):
    """A whole number in ASCII digits: int() also reads "١٢" as 12, which no page sends."""

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str) and not value.isascii():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


# The page offers a few best performers; this bounds a hand-made request.
EXAMPLE_VARIANTS_MAX = 50


class ExamplesForm(forms.Form):
    """The examples the editor chose for `prompt`'s next version. Once valid,
    `examples` holds them in order: the current version's that stay ticked
    (keep_example: their positions), then the texts of the ticked best performers
    (example_variant: ids; only the prompt's published or retired variants count, as
    the page offers no other). Without examples_shown (a post from a form that has no
    examples section) `examples` is None: the current version's carry over."""

    examples_shown = forms.BooleanField(required=False)
    keep_example = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        error_messages={"invalid_choice": "The current version has no example %(value)s"},
    )
    example_variant = ListField(
        AsciiIntegerField(min_value=1, max_value=2**63 - 1),
        max_items=EXAMPLE_VARIANTS_MAX,
        required=False,
        error_messages={
            "too_many": "Choose at most %(max)d best performers",
            "invalid_item": "No variant is numbered %(value)s",
        },
    )

    def __init__(self, *args, prompt: Prompt, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.prompt = prompt
        current = prompt.current_version
        self.current_examples: list[str] = list(current.examples) if current else []
        positions = [str(i) for i in range(len(self.current_examples))]
        keep = cast("forms.TypedMultipleChoiceField", self.fields["keep_example"])
        keep.choices = [(i, i) for i in positions]
        keep.initial = positions

    def clean_example_variant(self) -> list[str]:
        """The texts of the chosen variants, in the order ticked. A number that names
        no variant (one deleted since the page was shown) is refused; a variant the
        page does not offer (another prompt's, or not approved) is left out."""
        ids = self.cleaned_data["example_variant"]
        if not ids:
            return []
        found = Variant.objects.filter(pk__in=ids).values_list("pk", "prompt_id", "status", "text")
        offered = {Variant.Status.PUBLISHED, Variant.Status.RETIRED}
        texts = {
            pk: (text if prompt_id == self.prompt.pk and status in offered else None)
            for pk, prompt_id, status, text in found
        }
        missing = [pk for pk in ids if pk not in texts]
        if missing:
            raise forms.ValidationError([f"No variant is numbered {pk}" for pk in missing])
        return [text for pk in ids if (text := texts[pk]) is not None]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        cleaned["examples"] = None
        if cleaned.get("examples_shown") and not self.errors:
            kept = [self.current_examples[i] for i in cleaned["keep_example"]]
            cleaned["examples"] = kept + cleaned["example_variant"]
        return cleaned

    def kept(self) -> set[str]:
        """The positions of the current examples ticked, as the page shows them again:
        as posted, or every one (a new page, or a post without the examples section)."""
        if self.is_bound and self["examples_shown"].value():
            return set(self["keep_example"].value() or [])
        return set(self.fields["keep_example"].initial)

    def chosen(self) -> set[str]:
        """The best performers ticked, as posted."""
        return {str(pk) for pk in self["example_variant"].value() or []} if self.is_bound else set()


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


# What one run may list: as many products as the REST API takes, as many customers as
# a one-to-one run writes to (generation.services.messages.RUN_CUSTOMERS_MAX).
RUN_PRODUCTS_MAX = 100_000
RUN_CUSTOMERS_MAX = gen_messages.RUN_CUSTOMERS_MAX


class Audience(models.TextChoices):
    SEGMENTS = "segments", "Segments: a variant per product and segment"
    CUSTOMERS = "customers", "Customers: a one-to-one message each"


def _listed(text: str) -> list[str]:
    """Values one a line or separated by commas, each once, in the order given."""
    values = (v.strip() for line in text.splitlines() for v in line.split(","))
    return list(dict.fromkeys(v for v in values if v))


def _unknown(kind: str, missing: list[str]) -> str:
    more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
    shown = ", ".join(missing[:20]) + more
    return f"Unknown {kind}{'s' if len(missing) > 1 else ''}: {shown}"


class RunForm(BudgetForm):
    """A new run, as the run builder sends it: the prompt (its current version), then

    - segments: the products (every one, or those of a category, a subcategory and a
      search by SKU or name, or a listed set of SKUs) × the ticked segments;
    - customers: a one-to-one message about one product to each listed customer
      (external ids) or to each member of one segment, for a purpose;

    and a budget. Once valid, cleaned_data holds the prompt's `version` and the scope:
    `products` and `segments` (segments), or `product`, `customers` and
    `customer_segment` (customers). Nothing is written here; `confirm` asks the view
    to start the run rather than estimate it.
    """

    prompt = forms.ModelChoiceField(
        queryset=Prompt.objects.all(),
        to_field_name="slug",
        error_messages={
            "required": "Choose a prompt",
            "invalid_choice": "Unknown prompt '%(value)s'",
        },
    )
    audience = forms.ChoiceField(
        choices=Audience.choices,
        required=False,
        error_messages={"invalid_choice": "Write for segments or for customers"},
    )
    # The products of a segment run: the filters, or a list that replaces them.
    category = forms.CharField(required=False, max_length=120)
    subcategory = forms.CharField(required=False, max_length=120)
    search = forms.CharField(required=False, max_length=100)
    products = forms.CharField(required=False, widget=forms.Textarea)
    segments = forms.ModelMultipleChoiceField(
        queryset=Segment.objects.all(),
        to_field_name="slug",
        required=False,
        error_messages={"invalid_choice": "Unknown segment '%(value)s'"},
    )
    # A one-to-one run: one product, what the message is for, and who gets one.
    product = forms.CharField(required=False, max_length=64)
    purpose = forms.CharField(required=False, max_length=gen_messages.PURPOSE_MAX)
    customers = forms.CharField(required=False, widget=forms.Textarea)
    customer_segment = forms.ModelChoiceField(
        queryset=Segment.objects.all(),
        to_field_name="slug",
        required=False,
        error_messages={"invalid_choice": "Unknown segment '%(value)s'"},
    )
    confirm = forms.BooleanField(required=False)
    field_order = ["prompt", "audience", "budget", "confirm"]

    def clean_audience(self) -> str:
        return self.cleaned_data["audience"] or Audience.SEGMENTS

    def clean_budget(self) -> Decimal | None:
        budget = super().clean_budget()
        if budget is not None and budget <= 0:
            raise forms.ValidationError(
                f"The budget must be a positive number of dollars, not '{self.data['budget']}'"
            )
        return budget

    def clean_prompt(self) -> Prompt:
        """A prompt is run as its current version: one without a version is refused."""
        prompt = self.cleaned_data["prompt"]
        self.cleaned_data["version"] = prompt.current_version
        if self.cleaned_data["version"] is None:
            raise forms.ValidationError(
                f"Prompt '{prompt.slug}' has no version yet: save one in the studio first"
            )
        return prompt

    def clean(self) -> dict[str, Any]:
        super().clean()
        if self.cleaned_data.get("audience") == Audience.CUSTOMERS:
            self._clean_customers()
        else:
            self._clean_segments()
        return self.cleaned_data

    def matching_products(self) -> QuerySet[Product]:
        """The products the filters pick (all three at once; none set: every product)."""
        data = self.cleaned_data
        products = Product.objects.all()
        if data.get("category"):
            products = products.filter(category=data["category"])
        if data.get("subcategory"):
            products = products.filter(subcategory=data["subcategory"])
        if data.get("search"):
            term = data["search"]
            products = products.filter(Q(sku__icontains=term) | Q(name__icontains=term))
        return products

    def _clean_segments(self) -> None:
        cleaned = self.cleaned_data
        if "products" not in self.errors:
            skus = _listed(cleaned.get("products", ""))
            if len(skus) > RUN_PRODUCTS_MAX:
                self.add_error("products", f"List at most {RUN_PRODUCTS_MAX:,} SKUs")
            elif skus:
                found = Product.objects.in_bulk(skus, field_name="sku")
                missing = [sku for sku in skus if sku not in found]
                if missing:
                    self.add_error("products", _unknown("SKU", missing))
                else:
                    cleaned["products"] = [found[sku] for sku in skus]
                    cleaned["listed"] = True
            else:
                cleaned["products"] = list(self.matching_products())
                cleaned["listed"] = False
                if not cleaned["products"]:
                    self.add_error(
                        "products",
                        "No product matches: widen the category, subcategory or search"
                        if Product.objects.exists()
                        else "The run covers no products: import a catalog first",
                    )
        if "segments" not in self.errors and not cleaned.get("segments"):
            self.add_error("segments", "Tick at least one segment to write for")

    def _clean_customers(self) -> None:
        cleaned = self.cleaned_data
        if cleaned.get("budget") is not None:
            self.add_error("budget", "One-to-one runs take no budget yet: leave it empty")
        sku = cleaned.get("product", "")
        if not sku and "product" not in self.errors:
            self.add_error("product", "Give the SKU of the product the messages are about")
        elif sku:
            cleaned["product"] = Product.objects.filter(sku=sku).first()
            if cleaned["product"] is None:
                self.add_error("product", _unknown("SKU", [sku]))
        if not cleaned.get("purpose") and "purpose" not in self.errors:
            self.add_error("purpose", "Say what the message is for, e.g. 'back in stock'")
        if "customers" in self.errors or "customer_segment" in self.errors:
            return
        ids = _listed(cleaned.get("customers", ""))
        segment = cleaned.get("customer_segment")
        cleaned["customers"] = None
        if ids and segment is not None:
            self.add_error("customers", "List customers or choose a segment, not both")
        elif len(ids) > RUN_CUSTOMERS_MAX:
            self.add_error("customers", f"List at most {RUN_CUSTOMERS_MAX:,} customers")
        elif ids:
            found = Customer.objects.in_bulk(ids, field_name="external_id")
            missing = [i for i in ids if i not in found]
            if missing:
                self.add_error("customers", _unknown("customer", missing))
            else:
                cleaned["customers"] = [found[i] for i in ids]
        elif segment is None:
            self.add_error("customers", "List the customers' external ids, or choose a segment")
        elif not segment.member_count:
            self.add_error("customer_segment", f"Segment '{segment.name}' has no members")


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
# Rows a builder may post: as many as a segment may have rules.
RULE_ROWS_MAX = SEGMENT_RULES_MAX


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


class BaseRuleFormSet(_RowsFormSet):
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


# --- experiments ------------------------------------------------------------------------


class ExperimentStartForm(forms.Form):
    """Start an experiment from a variant's focus view: which of the slot's approved
    variants are arms (`candidates`, the live one first: it is an arm whatever is
    ticked), the shares in percent (equal unless set by hand), and the settings.

    The service checks what the form cannot (the slot, the sums, the ranges) and names
    the field; `settings()` and `shares()` hand it what was sent.
    """

    variants = forms.TypedMultipleChoiceField(
        coerce=int, widget=forms.CheckboxSelectMultiple, label="Variants to test"
    )
    custom_shares = forms.BooleanField(required=False, label="Set the shares by hand")
    allocation = forms.ChoiceField(
        choices=Experiment.Allocation.choices, initial=Experiment.Allocation.FIXED
    )
    metric = forms.ChoiceField(choices=Experiment.Metric.choices, initial=Experiment.Metric.CLICK)
    correction = forms.ChoiceField(
        choices=Experiment.Correction.choices, initial=Experiment.Correction.HOLM
    )
    control_share = forms.FloatField(
        initial=10, min_value=0, max_value=100, label="Base copy's share (%)"
    )
    floor = forms.FloatField(initial=1, min_value=0, max_value=100, label="Floor per variant (%)")
    cadence_minutes = forms.IntegerField(
        initial=15, min_value=1, max_value=7 * 24 * 60, label="Bandit cadence (minutes)"
    )
    min_exposures = forms.IntegerField(
        initial=1000, min_value=1, max_value=10_000_000, label="Minimum visitors per arm"
    )
    auto_pause_losers = forms.BooleanField(
        required=False, initial=True, label="Pause losing variants automatically"
    )
    auto_promote = forms.BooleanField(
        required=False, initial=False, label="Publish a winner without waiting for me"
    )

    def __init__(self, *args: Any, candidates: list[Variant], live: Variant | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.candidates, self.live = candidates, live
        self.arm_keys = ["control", *(f"v{v.pk}" for v in candidates)]
        variants = cast(forms.TypedMultipleChoiceField, self.fields["variants"])
        variants.choices = [(v.pk, f"Variant {v.pk}") for v in candidates]
        # Up to DEFAULT_ARMS ticked: the live one and the newest approved after it.
        self.fields["variants"].initial = [v.pk for v in candidates[: allocation.DEFAULT_ARMS]]
        equal = round(90 / max(1, min(len(candidates), allocation.DEFAULT_ARMS)), 2)
        for key in self.arm_keys:
            self.fields[f"share_{key}"] = forms.FloatField(
                required=False,
                min_value=0,
                max_value=100,
                label=f"Share of {key} (%)",
                initial=10 if key == "control" else equal,
            )

    def share_field(self, key: str) -> forms.BoundField:
        return self[f"share_{key}"]

    def clean_variants(self) -> list[int]:
        chosen = self.cleaned_data["variants"]
        if len(chosen) > allocation.MAX_ARMS:
            raise forms.ValidationError(f"At most {allocation.MAX_ARMS} variants")
        return chosen

    def shares(self) -> dict[str, float] | None:
        """The shares in percent by arm key, for the control, the live variant and the
        ticked ones; None: split equally."""
        if not self.cleaned_data.get("custom_shares"):
            return None
        keys = ["control", *(f"v{pk}" for pk in self.cleaned_data["variants"])]
        if self.live is not None and f"v{self.live.pk}" not in keys:
            keys.insert(1, f"v{self.live.pk}")
        return {key: self.cleaned_data.get(f"share_{key}") or 0.0 for key in keys}

    def settings(self) -> experiment_services.Settings:
        data = self.cleaned_data
        return experiment_services.Settings(
            allocation=data["allocation"],
            metric=data["metric"],
            correction=data["correction"],
            control_share=data["control_share"] / 100,
            floor=data["floor"] / 100,
            cadence_minutes=data["cadence_minutes"],
            min_exposures=data["min_exposures"],
            auto_pause_losers=data["auto_pause_losers"],
            auto_promote=data["auto_promote"],
        )


class ExperimentStopForm(forms.Form):
    """Stop an experiment: publish one of its variants, or keep the live one."""

    promote = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Then serve"
    )
    reason = forms.CharField(required=False, max_length=500)
    confirm = forms.BooleanField(
        label="Yes, stop the experiment",
        error_messages={"required": "Tick the box to confirm: stopping cannot be undone"},
    )

    def __init__(self, *args: Any, variants: list[Variant], **kwargs: Any):
        super().__init__(*args, **kwargs)
        promote = cast(forms.TypedChoiceField, self.fields["promote"])
        promote.choices = [
            ("", "the live variant, as now"),
            *((v.pk, f"Variant {v.pk}") for v in variants),
        ]


class ArmActionForm(forms.Form):
    """Pause or resume one arm; a pause may say why."""

    reason = forms.CharField(required=False, max_length=500)


# --- column mapping: a CDP export mapped in the browser -----------------------------------

# How the page names the reader's types (generation.audience.TYPES).
TYPE_LABELS = {
    "text": "text",
    "integer": "whole number",
    "number": "number",
    "boolean": "yes/no",
    "date": "date",
    "choice": "choice",
}
CHOICES_TEXT_MAX = 4000


class MappingUploadForm(forms.Form):
    """A customer file to map (an empty one is the service's to refuse, naming it)."""

    file = forms.FileField(
        allow_empty_file=True, error_messages={"required": "Choose a customer file to map."}
    )


class MappingForm(forms.Form):
    """The mapping page's own fields: the source to save the mapping as, the column
    that holds the external id (one of the file's `columns`), and whether to import the
    good rows when some are bad."""

    name = forms.CharField(
        max_length=200,
        error_messages={"required": "Name the source to save the mapping as."},
    )
    external_id = forms.ChoiceField(
        error_messages={
            "required": "Choose the column that holds the external id.",
            "invalid_choice": "The file has no column '%(value)s'.",
        }
    )
    skip_invalid = forms.BooleanField(required=False)

    def __init__(self, *args, columns: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cast("forms.ChoiceField", self.fields["external_id"]).choices = [(c, c) for c in columns]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not slugify(name):
            raise forms.ValidationError("A source needs a name with letters or digits.")
        return name


class ColumnRowForm(forms.Form):
    """One file column of the mapping: the attribute it becomes, of which type (a
    choice's choices separated by commas), personal or required; or ignored. The
    external id's column (`external_id`) is the external id whatever its row says.
    Once valid, `entry` holds its mapping entry (None: ignored)."""

    column = forms.CharField(widget=forms.HiddenInput, max_length=1000)
    attribute = forms.CharField(required=False, max_length=64)
    type = forms.ChoiceField(
        choices=TYPE_LABELS.items(),
        initial="text",
        error_messages={"invalid_choice": "'%(value)s' is not a type we read"},
    )
    choices = forms.CharField(required=False, max_length=CHOICES_TEXT_MAX)
    personal = forms.BooleanField(required=False)
    required = forms.BooleanField(required=False)
    ignore = forms.BooleanField(required=False)
    # Bounds a saved source may hold; the page carries them, it does not edit them.
    min = forms.FloatField(required=False, widget=forms.HiddenInput)
    max = forms.FloatField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, columns: list[str], external_id: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.columns, self.external_id = columns, external_id

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        cleaned["entry"] = None
        column = cleaned.get("column")
        if column is None or self.errors:
            return cleaned
        if column not in self.columns:
            self.add_error(None, f"The file has no column '{column}'.")
            return cleaned
        if column == self.external_id:
            if cleaned["ignore"]:
                self.add_error("ignore", "The external id's column cannot be ignored.")
            cleaned["entry"] = "external_id"
            return cleaned
        if cleaned["ignore"]:
            return cleaned
        attribute, kind = cleaned["attribute"], cleaned["type"]
        if not attribute:
            self.add_error("attribute", "Name the attribute, or tick Ignore.")
        elif not ATTRIBUTE_RE.match(attribute):
            self.add_error(
                "attribute",
                "An attribute is a name of letters, digits and _, starting with a letter.",
            )
        elif attribute == "external_id":
            self.add_error(
                "attribute", "Only the external id's column maps to external_id: choose it above."
            )
        elif attribute == "language" and kind != "text":
            self.add_error("type", "language is text (a tag such as de or pt-BR).")
        choices = list(dict.fromkeys(c.strip() for c in cleaned["choices"].split(",") if c.strip()))
        if kind == "choice" and not choices:
            self.add_error("choices", "A choice needs its choices, separated by commas.")
        if self.errors:
            return cleaned
        entry: dict[str, Any] = {"attribute": attribute, "type": kind}
        if kind == "choice":
            entry["choices"] = choices
        if kind in ("integer", "number"):
            entry |= {k: cleaned[k] for k in ("min", "max") if cleaned.get(k) is not None}
        if cleaned["required"]:
            entry["required"] = True
        if cleaned["personal"]:
            entry["personal"] = True
        cleaned["entry"] = entry
        return cleaned

    def messages(self) -> list[str]:
        """The row's errors, each naming its column ("Column 'E-Mail': ...")."""
        column = self["column"].value()
        return [f"Column '{column}': {e}" for errors in self.errors.values() for e in errors]


class BaseColumnFormSet(_RowsFormSet):
    """The mapping's rows, one per file column (posted as col-0-column, col-0-attribute,
    ...). Built with the file's `columns` and the external id's column as the page
    form cleaned it. Once valid, `mapping` holds the audience.Mapping they describe."""

    default_error_messages = {"too_many_forms": "At most %(num)d columns"}

    def __init__(self, *args, columns: list[str], external_id: str | None = None, **kwargs) -> None:
        self.columns, self.external_id = columns, external_id
        self.mapping: Mapping | None = None
        super().__init__(*args, **kwargs)

    @classmethod
    def get_default_prefix(cls) -> str:
        return "col"

    def get_form_kwargs(self, index: int | None) -> dict:
        return {"columns": self.columns, "external_id": self.external_id}

    def clean(self) -> None:
        """Each column once, each attribute once; then the mapping as the reader parses
        it (MappingError: what the rows could not catch, above them)."""
        self.mapping = None
        entries: dict[str, Any] = {}
        attributes: dict[str, str] = {}
        for form in self.forms:
            if not form.is_valid() or form.cleaned_data["entry"] is None:
                continue
            column, entry = form.cleaned_data["column"], form.cleaned_data["entry"]
            if column in entries:
                form.add_error(None, "The column has two rows.")
                continue
            attribute = entry if isinstance(entry, str) else entry["attribute"]
            if attribute in attributes:
                form.add_error(
                    "attribute",
                    f"Column '{attributes[attribute]}' maps to '{attribute}' too: "
                    "map each attribute once.",
                )
                continue
            attributes[attribute] = column
            entries[column] = entry
        if any(self.errors) or self.external_id is None:
            return  # the page form says what is missing
        entries.setdefault(self.external_id, "external_id")
        try:
            self.mapping = Mapping.parse({"columns": entries, "unmapped": "drop"})
        except MappingError as exc:
            raise forms.ValidationError(str(exc)) from None


# formset_factory makes a subclass of `formset`; its type only says BaseFormSet.
ColumnFormSet = cast(
    "type[BaseColumnFormSet]",
    forms.formset_factory(
        ColumnRowForm,
        formset=BaseColumnFormSet,
        extra=0,
        max_num=COLUMNS_MAX,
        absolute_max=COLUMNS_MAX,
        validate_max=True,
    ),
)


# --- the catalog and the audience (review/views/catalog.py) ------------------------------

# A list page's number only says which page it is (carried by the pager's links): its
# rows are found by the key they start after, never by an offset.
PAGE_NUMBER_MAX = 10**6
# Longer than any SKU (64) or external id (128): a key is compared, never stored.
PAGE_KEY_MAX = 128


class ListPageForm(forms.Form):
    """A list page's GET form: the search, and the key the page starts after or ends
    before (`after`, `before`), with the page's number. Invalid values are reported
    and left out."""

    q = forms.CharField(label="Search", required=False, max_length=100, strip=True)
    after = forms.CharField(label="After", required=False, max_length=PAGE_KEY_MAX, strip=False)
    before = forms.CharField(label="Before", required=False, max_length=PAGE_KEY_MAX, strip=False)
    page = AsciiIntegerField(label="Page", required=False, min_value=1, max_value=PAGE_NUMBER_MAX)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("after") and cleaned.get("before"):
            self.add_error("before", "Give the key a page starts after or ends before, not both.")
        return cleaned

    def values(self) -> dict[str, Any]:
        """Every field, invalid ones as if not sent (empty, page 1)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {
            "q": cleaned.get("q") or "",
            "after": cleaned.get("after") or "",
            "before": cleaned.get("before") or "",
            "page": cleaned.get("page") or 1,
        }

    def messages(self) -> list[str]:
        """The errors, each after its field's name."""
        return [
            f"{self[name].label}: {error}" if name in self.fields else str(error)
            for name, errors in self.errors.items()
            for error in errors
        ]


class ProductSearchForm(ListPageForm):
    q = forms.CharField(
        label="Search", required=False, max_length=100, strip=True,
        help_text="The start of a SKU, or any part of the name",
    )  # fmt: skip


class CustomerSearchForm(ListPageForm):
    q = forms.CharField(
        label="External id", required=False, max_length=PAGE_KEY_MAX, strip=False,
        help_text="The start of a customer's external id, exactly as imported",
    )  # fmt: skip


class CustomerEraseForm(forms.Form):
    """Erasing a customer is confirmed by typing their external id again, so that
    neither a stray click nor a hand-made POST erases anyone."""

    confirm = forms.CharField(
        label="External id",
        max_length=PAGE_KEY_MAX,
        strip=False,
        error_messages={"required": "Type the customer's external id to confirm the erasure."},
    )

    def __init__(self, *args: Any, external_id: str, **kwargs: Any) -> None:
        self.external_id = external_id
        super().__init__(*args, **kwargs)

    def clean_confirm(self) -> str:
        typed = self.cleaned_data["confirm"]
        if typed != self.external_id:
            raise forms.ValidationError(
                "That is not this customer's external id: nothing was erased."
            )
        return typed


# --- brands, new prompts and API tokens (issue 18) -----------------------------------------


class BrandNameForm(BrandForm):
    """A brand as the brand pages create or edit it: its name (the service refuses one
    in use, whatever its case), then the voice and word lists as BrandForm reads them."""

    name = forms.CharField(max_length=120, error_messages={"required": "A brand needs a name"})
    field_order = ["name", "voice", "banned_phrases", "protected_terms"]


class _NewPromptForm(forms.Form):
    name = forms.CharField(max_length=200, error_messages={"required": "A prompt needs a name"})
    # Empty: made from the name. The service checks it and refuses one in use.
    slug = forms.CharField(max_length=100, required=False)


class PromptNewForm(_NewPromptForm):
    """A new prompt, its settings and its first template (from a starter, edited or
    not). The service checks the template as a studio save does, and the languages."""

    starter = forms.CharField(required=False, max_length=40)
    brand = forms.ModelChoiceField(
        queryset=Brand.objects.order_by("name"),
        error_messages={
            "required": "Choose the brand whose voice it writes in",
            "invalid_choice": "That brand does not exist (any more); choose another",
        },
    )
    channel = forms.ChoiceField(
        choices=Prompt.Channel.choices,
        error_messages={"invalid_choice": "Choose one of the channels listed"},
    )
    max_length = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        error_messages={
            "required": "Give the most characters of copy the channel shows",
            "min_value": "The length limit is 1 to 10,000 characters",
            "max_value": "The length limit is 1 to 10,000 characters",
        },
    )
    model = forms.CharField(max_length=120, error_messages={"required": "Name the model"})
    languages = forms.CharField(required=False, max_length=400)
    template = forms.CharField(
        widget=forms.Textarea,
        strip=False,
        error_messages={"required": "The template is empty: start from a starter"},
    )

    def clean_languages(self) -> list[str]:
        raw = self.cleaned_data["languages"].replace(";", ",").split(",")
        return [tag.strip() for tag in raw if tag.strip()]

    def clean_template(self) -> str:
        template = self.cleaned_data["template"].replace("\r\n", "\n")
        if not template.strip():
            raise forms.ValidationError("The template is empty: start from a starter")
        return template


class PromptDuplicateForm(_NewPromptForm):
    """The copy's name and slug; the rest is the prompt's."""


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        error_messages={"required": "Name the token after who uses it, e.g. 'web shop (prod)'"},
    )
    kind = forms.ChoiceField(
        choices=ApiToken.Kind.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose what it may do: read or write",
            "invalid_choice": "A token reads or writes; choose one of the two",
        },
    )
