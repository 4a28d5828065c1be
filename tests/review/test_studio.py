"""The marketing lead's pages: brand voice and the prompt studio (review/views/studio.py)."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from generation.models import Brand, GenerationRun, PromptVersion, Variant
from tests.conftest import slot_completions
from tests.factories import (
    BrandFactory,
    ProductFactory,
    PromptVersionFactory,
    SegmentFactory,
    UserFactory,
    VariantFactory,
)

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
TEMPLATE = "Write about {product_name} for {segment_name} in {language}."


@pytest.fixture(autouse=True)
def patient_enough(settings):
    settings.LLM_MAX_ATTEMPTS = 2
    settings.LLM_BACKOFF_MAX_SECONDS = 0.05


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(user)
    return user


@pytest.fixture
def copywriter(client):
    user = UserFactory(username="cw", groups=["copywriter"])
    client.force_login(user)
    return user


@pytest.fixture
def studio():
    """A prompt at v1 with two products × two segments: one variant in review, one
    published, one slot without a variant."""
    version = PromptVersionFactory(template=TEMPLATE, number=1)
    products = ProductFactory.create_batch(2)
    segments = SegmentFactory.create_batch(2)
    VariantFactory(prompt_version=version, product=products[0], segment=segments[0])
    VariantFactory(
        prompt_version=version, product=products[0], segment=segments[1], status="published"
    )
    VariantFactory(prompt_version=version, product=products[1], segment=segments[0])
    return version.prompt, products, segments


def _samples(*rows: tuple[str, str], blank: int = 0) -> dict:
    """The sample rows (SKU, segment slug) as the studio's formset posts them:
    sample-0-sku, sample-0-segment, ..., then `blank` empty rows, and the management form."""
    rows = (*rows, *[("", "")] * blank)
    data: dict = {"sample-TOTAL_FORMS": len(rows), "sample-INITIAL_FORMS": 0}
    for i, (sku, slug) in enumerate(rows):
        data |= {f"sample-{i}-sku": sku, f"sample-{i}-segment": slug}
    return data


def _draft(prompt, products, segments, **changes) -> dict:
    version = prompt.current_version
    return {
        "template": version.template,
        "model": version.model,
        "temperature": version.temperature,
        "note": "",
        "preview_product": products[0].sku,
        "preview_segment": segments[0].slug,
        **_samples(blank=5),
        **changes,
    }


def _urls(prompt) -> tuple[list[str], list[str]]:
    slug = prompt.slug
    gets = [
        reverse("review:brand"),
        reverse("review:prompts"),
        reverse("review:studio", args=[slug]),
    ]
    posts = [
        reverse("review:brand"),
        *(
            reverse(f"review:studio-{action}", args=[slug])
            for action in ("preview", "try", "impact", "save")
        ),
        reverse("review:studio-rollback", args=[slug, 1]),
    ]
    return gets, posts


# --- roles ---------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, studio):
    gets, posts = _urls(studio[0])
    for response in [client.get(url) for url in gets] + [client.post(url) for url in posts]:
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_copywriters_cannot_open_or_change_brand_voice_or_prompts(client, copywriter, studio):
    prompt = studio[0]
    gets, posts = _urls(prompt)
    for url in gets:
        assert client.get(url).status_code == 403
        assert client.get(url, headers=HX).status_code == 403
    for url in posts:
        data = _draft(*studio, template="Changed {product_name}", voice="Changed")
        assert client.post(url, data).status_code == 403
        assert client.post(url, data, headers=HX).status_code == 403
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
    assert Brand.objects.get().voice != "Changed"


def test_the_nav_shows_prompts_and_brand_to_leads_only(client, studio):
    lead = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(lead)
    body = client.get(reverse("review:runs")).content.decode()
    assert reverse("review:prompts") in body and reverse("review:brand") in body
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    body = client.get(reverse("review:runs")).content.decode()
    assert reverse("review:prompts") not in body and reverse("review:brand") not in body


def test_every_write_needs_the_csrf_token(studio):
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="lead", groups=["marketing lead"]))
    _gets, posts = _urls(studio[0])
    for url in posts:
        assert client.post(url, _draft(*studio)).status_code == 403


# --- brand voice ------------------------------------------------------------------------------


def test_a_lead_edits_the_brand_voice_and_word_lists(client, lead):
    brand = BrandFactory()
    page = client.get(reverse("review:brand")).content.decode()
    assert brand.voice in page and "best in the world\nmiracle" in page

    response = client.post(
        reverse("review:brand"),
        {
            "brand": brand.pk,
            "name": brand.name,
            "voice": "Warm and direct.",
            "banned_phrases": "miracle\r\n\r\n  Miracle \r\nguaranteed",
            "protected_terms": "Northwind\r\nNorthwind",
        },
    )

    assert response.status_code == 302
    brand.refresh_from_db()
    assert brand.voice == "Warm and direct."
    assert brand.banned_phrases == ["miracle", "guaranteed"]
    assert brand.protected_terms == ["Northwind"]


def test_saving_the_brand_with_htmx_returns_the_form_saved(client, lead):
    brand = BrandFactory()
    response = client.post(
        reverse("review:brand"),
        {
            "brand": brand.pk,
            "name": brand.name,
            "voice": "Warm.",
            "banned_phrases": "",
            "protected_terms": "",
        },
        headers=HX,
    )
    body = response.content.decode()
    assert response.status_code == 200 and 'id="brand-form"' in body and "<html" not in body
    assert "Saved." in body
    brand.refresh_from_db()
    assert brand.voice == "Warm."


@pytest.mark.parametrize("headers", [{}, HX])
def test_an_empty_voice_is_refused_and_what_was_typed_stays(client, lead, headers):
    brand = BrandFactory()
    response = client.post(
        reverse("review:brand"),
        {
            "brand": brand.pk,
            "name": brand.name,
            "voice": "  ",
            "banned_phrases": "typed <b>phrase</b>",
        },
        headers=headers,
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "The brand voice cannot be empty" in body
    assert "typed &lt;b&gt;phrase&lt;/b&gt;" in body
    brand.refresh_from_db()
    assert brand.voice.startswith("We speak plainly")


def test_a_protected_term_with_a_banned_phrase_is_refused(client, lead):
    brand = BrandFactory()
    response = client.post(
        reverse("review:brand"),
        {
            "brand": brand.pk,
            "name": brand.name,
            "voice": "V",
            "banned_phrases": "mile",
            "protected_terms": "Magic Mile",
        },
        headers=HX,
    )
    assert "cannot contain a banned phrase: &#x27;Magic Mile&#x27;" in response.content.decode()
    brand.refresh_from_db()
    assert brand.voice != "V"


# --- prompt list and studio page -------------------------------------------------------------


def test_the_prompt_list_shows_versions_and_counts_in_few_queries(
    client, lead, studio, django_assert_max_num_queries
):
    for _ in range(3):
        VariantFactory()
    with django_assert_max_num_queries(6):
        body = client.get(reverse("review:prompts")).content.decode()
    prompt = studio[0]
    assert reverse("review:studio", args=[prompt.slug]) in body and "v1" in body


def test_the_studio_shows_the_template_escaped_and_the_placeholders(client, lead, studio):
    prompt = studio[0]
    PromptVersion.objects.filter(prompt=prompt).update(template="<script>x</script> {product_name}")
    body = client.get(reverse("review:studio", args=[prompt.slug])).content.decode()
    assert "&lt;script&gt;x&lt;/script&gt; {product_name}" in body and "<script>x" not in body
    assert "{segment_summary}" in body and "who is in the segment" in body


# --- preview ------------------------------------------------------------------------------


def test_preview_shows_the_exact_messages_escaped(client, lead, studio):
    prompt, products, segments = studio
    data = _draft(*studio, template="<i>New</i> {product_name} for {segment_name}")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<section id="preview"')
    assert prompt.brand.voice in body  # the system message
    assert f"&lt;i&gt;New&lt;/i&gt; {products[0].name} for {segments[0].name}" in body
    assert "&lt;data&gt;" in body and "<i>New" not in body


def test_preview_shows_the_share_of_the_prompt_every_segment_of_a_product_starts_with(
    client, lead, studio
):
    prompt = studio[0]
    Variant.objects.filter(prompt=prompt).update(
        generated=timezone.now(), prompt_tokens=400, cached_tokens=100
    )
    data = _draft(*studio, template="Write about {product_name} for {segment_name}.")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data, headers=HX)
    body = " ".join(response.content.decode().split())
    share = re.search(r"Prompt caching: (\d+)% of the rendered prompt \((\d+) of about (\d+)", body)
    assert share, body
    percent, shared, length = map(int, share.groups())
    # The voice, the rules and the product's data come before the audience.
    assert 50 <= percent < 100 and shared < length
    assert "compared over 2 segments" in body
    assert "reported 300 of 1200 prompt tokens cached" in body and "(25%)" in body


def test_preview_of_an_unknown_placeholder_names_it_inline(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Write for {audience}")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and 'id="preview"' in body
    assert "Unknown placeholder &#x27;{audience}&#x27;" in body


def test_preview_without_javascript_keeps_what_was_typed(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Write for {audience}", note="my note")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "Unknown placeholder" in body
    assert ">Write for {audience}</textarea>" in body and 'value="my note"' in body


# --- try -------------------------------------------------------------------------------------


def test_trying_writes_samples_now_and_saves_nothing(client, lead, studio, offline_writer):
    prompt, products, segments = studio
    products[1].description = "Light. <script>alert(1)</script>"
    products[1].save()
    before = (Variant.objects.count(), PromptVersion.objects.count(), GenerationRun.objects.count())
    data = _draft(
        *studio,
        template="TRY " + TEMPLATE,
        **_samples(
            (products[0].sku, segments[1].slug), (products[1].sku, segments[0].slug), blank=3
        ),
    )

    response = client.post(reverse("review:studio-try", args=[prompt.slug]), data, headers=HX)

    body = response.content.decode()
    assert response.status_code == 200 and 'id="try-results"' in body
    after = (Variant.objects.count(), PromptVersion.objects.count(), GenerationRun.objects.count())
    assert after == before
    completions = slot_completions(offline_writer)
    assert len(completions) == 2
    # The instruction comes after the data block (the prefix-cache order).
    assert all("</data>\n\nTRY " in r["body"]["messages"][1]["content"] for r in completions)
    assert body.count('<article class="card sample') == 2
    assert "Rationale:" in body and "tokens" in body and " ms" in body
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)" in body


def test_trying_without_javascript_shows_the_page_with_the_samples(
    client, lead, studio, offline_writer
):
    prompt = studio[0]
    response = client.post(reverse("review:studio-try", args=[prompt.slug]), _draft(*studio))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    # No rows chosen: the samples are picked from the prompt's slots (2 × 2 here).
    assert body.count('<article class="card sample') == 4


def test_a_half_filled_sample_row_is_named(client, lead, studio, offline_writer):
    prompt, products, _segments = studio
    data = _draft(*studio, **_samples((products[0].sku, "")))
    response = client.post(reverse("review:studio-try", args=[prompt.slug]), data, headers=HX)
    assert "Sample 1: Choose both a product" in response.content.decode()
    assert offline_writer.requests == []


def test_the_studio_form_carries_the_sample_rows_management_form(client, lead, studio):
    prompt = studio[0]
    body = client.get(reverse("review:studio", args=[prompt.slug])).content.decode()
    start = body.index('class="studio">')
    form = body[start : body.index("</form>", start)]
    assert 'name="sample-TOTAL_FORMS" value="5"' in form
    assert 'name="sample-INITIAL_FORMS" value="0"' in form
    assert 'name="sample-4-sku"' in form and 'name="sample-4-segment"' in form
    assert 'name="sample-5-sku"' not in form


def test_a_sample_row_with_an_unknown_sku_is_named_beside_it(client, lead, studio, offline_writer):
    prompt, _products, segments = studio
    data = _draft(*studio, **_samples(("", ""), ("NOPE-1", segments[0].slug), blank=3))
    response = client.post(reverse("review:studio-try", args=[prompt.slug]), data)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    # Named by its place on the page, in the try's region and under the row.
    assert body.count("Sample 2: No product with SKU &#x27;NOPE-1&#x27;") == 2
    assert 'name="sample-1-sku" list="products" value="NOPE-1"' in body
    assert slot_completions(offline_writer) == []


def test_more_filled_sample_rows_than_a_try_takes_are_refused(client, lead, studio, offline_writer):
    prompt, products, segments = studio
    rows = [(products[i % 2].sku, segments[i // 2 % 2].slug) for i in range(6)]
    data = _draft(*studio, **_samples(*rows))
    response = client.post(reverse("review:studio-try", args=[prompt.slug]), data, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and 'id="try-results"' in body
    assert "Try at most 5 samples at a time, not 6" in body
    assert slot_completions(offline_writer) == []


@pytest.mark.parametrize("headers", [{}, HX])
def test_a_try_without_the_sample_rows_management_form_says_so(
    client, lead, studio, offline_writer, headers
):
    prompt = studio[0]
    data = {k: v for k, v in _draft(*studio).items() if not k.startswith("sample-")}
    response = client.post(reverse("review:studio-try", args=[prompt.slug]), data, headers=headers)
    assert (
        response.status_code == 200
        and "ManagementForm data is missing" in response.content.decode()
    )
    assert slot_completions(offline_writer) == []


def test_preview_of_an_unknown_product_names_it_inline(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, preview_product=" NOPE-1 ")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and 'id="preview"' in body
    assert "No product with SKU &#x27;NOPE-1&#x27;" in body


def test_preview_without_a_segment_asks_for_both(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, preview_segment="")
    response = client.post(reverse("review:studio-preview", args=[prompt.slug]), data, headers=HX)
    assert "Choose both a product (its SKU) and a segment" in response.content.decode()


def test_trying_against_an_unreachable_endpoint_says_so(client, lead, studio, settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    prompt = studio[0]
    response = client.post(
        reverse("review:studio-try", args=[prompt.slug]), _draft(*studio), headers=HX
    )
    body = response.content.decode()
    assert response.status_code == 200 and "Cannot reach the LLM endpoint" in body


# --- impact and save ---------------------------------------------------------------------------


def test_impact_shows_what_saving_would_do_before_saving(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Shorter " + TEMPLATE)
    response = client.post(reverse("review:studio-impact", args=[prompt.slug]), data, headers=HX)
    body = " ".join(response.content.decode().split())
    assert '<section id="impact"' in body
    assert "Saving makes v2" in body
    assert "<strong>3</strong> slots regenerated (every slot that has a variant" in body
    assert "<strong>2</strong> variants in review superseded" in body
    assert "<strong>1</strong> published variant stays live" in body
    assert "Estimate: " in body and "Save v2 and regenerate 3 slots" in body
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_impact_of_an_unchanged_edit_offers_no_save(client, lead, studio):
    prompt = studio[0]
    response = client.post(
        reverse("review:studio-impact", args=[prompt.slug]), _draft(*studio), headers=HX
    )
    body = response.content.decode()
    assert "Nothing changed since v1" in body and "Save v2" not in body


def test_saving_makes_a_version_and_a_run_and_goes_to_the_run(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Shorter " + TEMPLATE, note="Shorter copy")

    response = client.post(reverse("review:studio-save", args=[prompt.slug]), data)

    version = prompt.versions.get(number=2)
    run = GenerationRun.objects.get(prompt_version=version)
    assert response.status_code == 302
    assert response["Location"] == reverse("review:run", args=[run.pk])
    assert (version.note, version.author, run.total) == ("Shorter copy", lead, 3)
    old = Variant.objects.filter(prompt_version__number=1)
    assert sorted(old.values_list("status", flat=True)) == ["published", "superseded", "superseded"]


def test_saving_with_htmx_redirects_the_browser_to_the_run(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Shorter " + TEMPLATE)
    response = client.post(reverse("review:studio-save", args=[prompt.slug]), data, headers=HX)
    run = GenerationRun.objects.get(prompt_version__number=2)
    assert response["HX-Redirect"] == reverse("review:run", args=[run.pk])


def test_saving_a_bad_template_saves_nothing_and_keeps_it(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="For {audience}")
    response = client.post(reverse("review:studio-save", args=[prompt.slug]), data)
    body = response.content.decode()
    assert response.status_code == 200 and "Unknown placeholder" in body
    assert ">For {audience}</textarea>" in body
    assert prompt.versions.count() == 1 and not GenerationRun.objects.exists()


def test_saving_with_a_bad_temperature_names_it(client, lead, studio):
    prompt = studio[0]
    data = _draft(*studio, template="Other " + TEMPLATE, temperature="hot")
    response = client.post(reverse("review:studio-save", args=[prompt.slug]), data, headers=HX)
    assert "Temperature: Enter a number." in response.content.decode()
    assert prompt.versions.count() == 1


# --- history and rollback -----------------------------------------------------------------------


def test_history_shows_an_escaped_diff_between_consecutive_versions(client, lead, studio):
    prompt = studio[0]
    PromptVersionFactory(prompt=prompt, number=2, template="<b>Bold</b> {product_name}")
    body = client.get(reverse("review:studio", args=[prompt.slug])).content.decode()
    assert '<span class="add">+&lt;b&gt;Bold&lt;/b&gt; {product_name}</span>' in body
    assert f'<span class="del">-{TEMPLATE}</span>' in body
    assert "Roll back to v1" in body and "Roll back to v2" not in body


def test_rollback_shows_its_impact_then_saves_the_old_version_as_new(client, lead, studio):
    prompt = studio[0]
    v1 = prompt.current_version
    PromptVersionFactory(prompt=prompt, number=2, template="Other " + TEMPLATE, temperature=1.2)
    url = reverse("review:studio-rollback", args=[prompt.slug, 1])

    first = client.post(url, headers=HX)
    assert "Roll back to v1" in first.content.decode() and "become v3" in first.content.decode()
    assert prompt.versions.count() == 2

    response = client.post(url, {"confirm": "1"})

    v3 = prompt.versions.get(number=3)
    run = GenerationRun.objects.get(prompt_version=v3)
    assert response["Location"] == reverse("review:run", args=[run.pk])
    assert (v3.template, v3.model, v3.temperature) == (v1.template, v1.model, v1.temperature)
    assert v3.note == "Rollback to v1" and v3.author == lead


def test_rolling_back_to_the_current_version_is_refused(client, lead, studio):
    prompt = studio[0]
    url = reverse("review:studio-rollback", args=[prompt.slug, 1])
    response = client.post(url, {"confirm": "1"}, headers=HX)
    assert "already the current version" in response.content.decode()
    assert prompt.versions.count() == 1


# --- examples -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, HX])
@pytest.mark.parametrize("action", ["preview", "try", "impact", "save"])
def test_an_example_id_that_is_not_a_number_is_a_message_on_the_page(
    client, lead, studio, action, headers
):
    prompt = studio[0]
    data = _draft(
        *studio,
        template="Other " + TEMPLATE,
        examples_shown="1",
        example_variant=["١٢"],  # Arabic-Indic digits: int() reads them, the form does not
    )
    response = client.post(
        reverse(f"review:studio-{action}", args=[prompt.slug]), data, headers=headers
    )
    assert response.status_code == 200
    assert "No variant is numbered &#x27;١٢&#x27;" in response.content.decode()
    assert prompt.versions.count() == 1


def test_keeping_an_example_the_current_version_lacks_is_a_message(client, lead, studio):
    prompt = studio[0]
    PromptVersion.objects.filter(prompt=prompt).update(examples=["Only one."])
    data = _draft(
        *studio, template="Other " + TEMPLATE, examples_shown="1", keep_example=["0", "3"]
    )
    response = client.post(reverse("review:studio-save", args=[prompt.slug]), data)
    body = response.content.decode()
    assert response.status_code == 200 and "The current version has no example 3" in body
    # The page keeps what was ticked.
    assert 'name="keep_example" value="0" checked' in body
    assert prompt.versions.count() == 1


def test_a_best_performer_deleted_since_the_page_was_shown_is_named(client, lead, studio):
    prompt = studio[0]
    gone = VariantFactory(prompt_version=prompt.current_version, status="published")
    gone_pk = gone.pk
    gone.delete()
    data = _draft(
        *studio, template="Other " + TEMPLATE, examples_shown="1", example_variant=[gone_pk]
    )
    response = client.post(reverse("review:studio-impact", args=[prompt.slug]), data, headers=HX)
    assert f"No variant is numbered {gone_pk}" in response.content.decode()
    assert "Saving makes v2" not in response.content.decode()
