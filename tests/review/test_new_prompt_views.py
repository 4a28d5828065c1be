"""The lead's set-up pages for brands and prompts: the brand list, a new brand, a new
prompt from a starter, and a copy of a prompt (review/views/studio.py)."""

import pytest
from django.urls import reverse

from generation import starters
from generation.models import Brand, Prompt, PromptVersion
from tests.factories import BrandFactory, PromptVersionFactory, UserFactory, VariantFactory

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def lead(client):
    user = UserFactory(username="lead", groups=["marketing lead"])
    client.force_login(user)
    return user


def _counts() -> tuple[int, int, int]:
    return Brand.objects.count(), Prompt.objects.count(), PromptVersion.objects.count()


def _new_prompt(brand_: Brand, **changes) -> dict:
    starter = starters.starter("product-page")
    return {
        "starter": starter.key,
        "name": "Product page (autumn)",
        "slug": "pdp-autumn",
        "brand": brand_.pk,
        "channel": starter.channel,
        "max_length": starter.max_length,
        "model": "offline-writer-1",
        "languages": "en, de-CH",
        "template": starter.template.replace("\n", "\r\n"),
    } | changes


def _pages(prompt: Prompt) -> list[str]:
    """Each page takes a GET (its form) and a POST (the write)."""
    return [
        reverse("review:brand-new"),
        reverse("review:prompt-new"),
        reverse("review:prompt-duplicate", args=[prompt.slug]),
    ]


# --- roles --------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client):
    pages = _pages(PromptVersionFactory().prompt)
    for response in [client.get(u) for u in pages] + [client.post(u) for u in pages]:
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_copywriters_may_not_create_brands_or_prompts(client):
    prompt = PromptVersionFactory().prompt
    client.force_login(UserFactory(username="cw", groups=["copywriter"]))
    gets = _pages(prompt)
    for url in gets:
        assert client.get(url).status_code == 403
        assert client.get(url, headers=HX).status_code == 403
    before = _counts()
    assert client.post(gets[0], {"name": "B", "voice": "V"}).status_code == 403
    assert client.post(gets[1], _new_prompt(prompt.brand)).status_code == 403
    assert client.post(gets[2], {"name": "Copy", "slug": "copy"}).status_code == 403
    assert _counts() == before


@pytest.mark.parametrize("role", ["lead", "staff"])
def test_leads_and_staff_open_every_page(client, role):
    prompt = PromptVersionFactory().prompt
    groups = ["marketing lead"] if role == "lead" else []
    client.force_login(UserFactory(username=role, groups=groups, is_staff=role == "staff"))
    for url in [*_pages(prompt), reverse("review:brand"), reverse("review:prompts")]:
        assert client.get(url).status_code == 200, url


def test_the_nav_and_the_prompt_list_lead_to_the_new_pages(client, lead):
    prompt = PromptVersionFactory().prompt
    body = client.get(reverse("review:prompts")).content.decode()
    assert reverse("review:prompt-new") in body
    assert reverse("review:prompt-duplicate", args=[prompt.slug]) in body
    assert reverse("review:brand-new") in client.get(reverse("review:brand")).content.decode()


# --- brands -------------------------------------------------------------------------------


def test_an_empty_instance_is_sent_to_create_its_first_brand(client, lead):
    response = client.get(reverse("review:brand"))
    assert response.status_code == 302 and response["Location"] == reverse("review:brand-new")
    body = client.get(reverse("review:brand-new")).content.decode()
    assert "No brand yet" in body


def test_a_lead_creates_a_brand_and_lands_on_it(client, lead):
    response = client.post(
        reverse("review:brand-new"),
        {
            "name": "Tidewater",
            "voice": "Calm and exact.",
            "banned_phrases": "miracle\r\n[de] Wunder",
            "protected_terms": "Tidewater",
        },
    )
    brand = Brand.objects.get(name="Tidewater")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('review:brand')}?brand={brand.pk}"
    assert (brand.voice, brand.banned_phrases) == ("Calm and exact.", ["miracle"])
    assert brand.banned_phrases_by_language == {"de": ["Wunder"]}
    page = client.get(response["Location"]).content.decode()
    assert "Created the brand Tidewater" in page and "Calm and exact." in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "NORTHWIND athletics"}, "There is a brand &#x27;Northwind Athletics&#x27;"),
        ({"name": "  "}, "A brand needs a name"),
        ({"voice": " "}, "The brand voice cannot be empty"),
    ],
)
def test_a_bad_new_brand_is_refused_beside_its_field_and_nothing_written(
    client, lead, data, message
):
    BrandFactory()
    before = _counts()
    response = client.post(
        reverse("review:brand-new"),
        {"name": "Tidewater", "voice": "Calm.", "protected_terms": "<b>typed</b>"} | data,
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert f'<p class="error" role="alert">{message}' in body
    assert "&lt;b&gt;typed&lt;/b&gt;" in body  # what was typed stays, escaped
    assert _counts() == before


def test_the_brand_page_lists_every_brand_and_edits_the_chosen_one(client, lead):
    first, second = BrandFactory(), BrandFactory(name="Tidewater", voice="Calm.")
    PromptVersionFactory(prompt__brand=second)
    body = client.get(reverse("review:brand"), {"brand": second.pk}).content.decode()
    assert "Northwind Athletics" in body and 'aria-current="page">Tidewater' in body
    assert "Calm." in body and first.voice not in body


def test_renaming_a_brand_reloads_the_page_and_a_taken_name_is_refused(client, lead):
    brand, _other = BrandFactory(), BrandFactory(name="Tidewater", voice="Calm.")
    data = {"brand": brand.pk, "voice": "Plain.", "banned_phrases": "", "protected_terms": ""}
    renamed = client.post(reverse("review:brand"), data | {"name": "Northwind"}, headers=HX)
    assert renamed.status_code == 200
    assert renamed["HX-Redirect"] == f"{reverse('review:brand')}?brand={brand.pk}"
    brand.refresh_from_db()
    assert (brand.name, brand.voice) == ("Northwind", "Plain.")

    refused = client.post(reverse("review:brand"), data | {"name": "tidewater"}, headers=HX)
    body = refused.content.decode()
    assert 'id="brand-form"' in body and "There is a brand &#x27;Tidewater&#x27;" in body
    brand.refresh_from_db()
    assert brand.name == "Northwind"


# --- a new prompt from a starter ----------------------------------------------------------


def test_the_new_prompt_page_offers_every_starter_and_fills_the_form_from_one(client, lead):
    brand = BrandFactory()
    PromptVersionFactory(prompt__slug="sms", prompt__brand=brand)
    body = client.get(reverse("review:prompt-new")).content.decode()
    for starter in starters.STARTERS:
        assert f"?starter={starter.key}" in body and starter.title in body
    assert "Rewrite the {brand_name} product description" in body  # the first, by default

    sms = client.get(reverse("review:prompt-new"), {"starter": "sms", "model": "gpt-4o-mini"})
    body = sms.content.decode()
    assert "Write one text message from {brand_name}" in body
    assert 'value="sms-2"' in body  # "sms" is taken: the next free slug is offered
    assert 'value="160"' in body and 'value="gpt-4o-mini"' in body  # the model is kept
    assert "<html" in body


def test_switching_starters_with_htmx_swaps_the_form_alone(client, lead):
    BrandFactory()
    response = client.get(reverse("review:prompt-new"), {"starter": "app-push"}, headers=HX)
    body = response.content.decode()
    assert response.status_code == 200 and 'id="prompt-new"' in body and "<html" not in body
    assert "push notification from the {brand_name} app" in body


def test_without_a_brand_the_page_sends_the_lead_to_create_one(client, lead):
    body = client.get(reverse("review:prompt-new")).content.decode()
    assert reverse("review:brand-new") in body and "there is no brand yet" in body


def test_a_lead_creates_a_prompt_from_a_starter_and_lands_in_its_studio(
    client, lead, offline_writer
):
    brand = BrandFactory()
    response = client.post(reverse("review:prompt-new"), _new_prompt(brand))
    prompt = Prompt.objects.get(slug="pdp-autumn")
    assert response.status_code == 302
    assert response["Location"] == reverse("review:studio", args=["pdp-autumn"])
    assert (prompt.name, prompt.brand, prompt.channel, prompt.max_length) == (
        "Product page (autumn)", brand, "product_page", 600
    )  # fmt: skip
    assert prompt.languages == ["en", "de-ch"]
    version = prompt.current_version
    assert version.template == starters.starter("product-page").template  # LF, not CRLF
    assert (version.number, version.author) == (1, lead)
    assert version.note == "From the starter 'Product page'"
    studio = client.get(response["Location"]).content.decode()
    assert "Created Product page (autumn) with its v1" in studio


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"slug": "pdp"}, "slug", "There is a prompt with the slug &#x27;pdp&#x27; already"),
        (
            {"template": "Write about {product_name} for {customer_email}."},
            "template",
            "Unknown placeholder &#x27;{customer_email}&#x27;",
        ),
        ({"name": "  "}, "name", "A prompt needs a name"),
        ({"languages": "en, klingon!"}, "languages", "&#x27;klingon!&#x27; is not a language tag"),
        ({"max_length": "0"}, "max_length", "The length limit is 1 to 10,000 characters"),
        ({"brand": "999999"}, "brand", "That brand does not exist"),
    ],
)
def test_bad_input_is_refused_beside_its_field_and_nothing_is_written(
    client, lead, offline_writer, changes, field, message
):
    PromptVersionFactory(prompt__slug="pdp")
    before = _counts()
    response = client.post(reverse("review:prompt-new"), _new_prompt(BrandFactory(), **changes))
    body = response.content.decode()
    assert response.status_code == 400
    assert f'<span class="error" role="alert">{message}' in body or (
        field == "template" and f'<p class="error" role="alert">{message}' in body
    )
    # Beside its field: the error and the field's input are next to each other.
    assert abs(body.index(message) - body.index(f'name="{field}"')) < 400
    assert _counts() == before
    assert "for {customer_email}" in body or field != "template"  # what was typed stays


def test_a_prompt_template_error_names_the_placeholder_and_sends_nothing(
    client, lead, offline_writer
):
    data = _new_prompt(BrandFactory(), template="Hi {first_name}")
    body = client.post(reverse("review:prompt-new"), data).content.decode()
    assert "Unknown placeholder &#x27;{first_name}&#x27;" in body
    assert offline_writer.requests == []  # refused before the endpoint was asked


def test_an_endpoint_that_lacks_the_model_is_said_above_the_form(client, lead, offline_writer):
    data = _new_prompt(BrandFactory(), model="no-such-model")
    before = _counts()
    body = client.post(reverse("review:prompt-new"), data).content.decode()
    assert "has no model &#x27;no-such-model&#x27;" in body
    assert _counts() == before


# --- a copy of a prompt -------------------------------------------------------------------


def test_a_lead_duplicates_a_prompt_and_lands_in_the_copys_studio(client, lead):
    version = PromptVersionFactory(template="Old {product_name}.", number=1)
    source = version.prompt
    VariantFactory(prompt_version=version)
    page = client.get(reverse("review:prompt-duplicate", args=[source.slug])).content.decode()
    assert f'value="{source.name} (copy)"' in page and f'value="{source.slug}-copy"' in page

    response = client.post(
        reverse("review:prompt-duplicate", args=[source.slug]), {"name": "B test", "slug": ""}
    )
    copy = Prompt.objects.get(slug="b-test")
    assert response["Location"] == reverse("review:studio", args=["b-test"])
    assert copy.current_version.template == "Old {product_name}."
    assert copy.brand == source.brand and not copy.variants.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "Copy", "slug": "taken"}, "There is a prompt with the slug &#x27;taken&#x27;"),
        ({"name": " ", "slug": "fresh"}, "A prompt needs a name"),
    ],
)
def test_a_bad_copy_is_refused_beside_its_field_and_nothing_is_written(client, lead, data, message):
    source = PromptVersionFactory(prompt__slug="taken").prompt
    before = _counts()
    response = client.post(reverse("review:prompt-duplicate", args=[source.slug]), data)
    assert response.status_code == 400
    assert f'<span class="error" role="alert">{message}' in response.content.decode()
    assert _counts() == before


def test_duplicating_a_prompt_that_does_not_exist_is_a_404(client, lead):
    assert client.get(reverse("review:prompt-duplicate", args=["nope"])).status_code == 404
    assert client.post(reverse("review:prompt-duplicate", args=["nope"])).status_code == 404
