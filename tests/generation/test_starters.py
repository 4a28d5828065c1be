"""The starter templates a new prompt begins from (generation/starters.py)."""

import pytest

from generation import prompting, starters
from generation.models import Prompt, PromptVersion
from tests.factories import BrandFactory, CustomerFactory, ProductFactory, SegmentFactory

pytestmark = pytest.mark.django_db

KEYS = [s.key for s in starters.STARTERS]


def test_the_five_starters_the_issue_asks_for_are_there_once_each():
    assert KEYS == ["product-page", "email-subject", "sms", "app-push", "review-request"]
    assert len({s.slug for s in starters.STARTERS}) == len(KEYS)
    assert starters.starter("sms").channel == Prompt.Channel.SMS
    assert starters.starter("no-such-starter") is None


@pytest.mark.parametrize("key", KEYS)
def test_a_starter_uses_only_placeholders_the_renderer_fills(key):
    starter = starters.starter(key)
    used = prompting.template_placeholders(starter.template)  # raises on an unknown one
    assert set(used) <= set(prompting.PLACEHOLDERS)
    assert {"product_name", "language", "max_length"} <= set(used)
    assert starter.channel in Prompt.Channel.values and 0 < starter.max_length <= 10_000


@pytest.mark.parametrize("key", KEYS)
def test_a_starter_renders_for_a_segment_and_for_one_customer(key):
    """Every value lands where its placeholder was, and the output rules stay the system
    message's: a starter that asked for its own would contradict the JSON mode."""
    starter = starters.starter(key)
    brand = BrandFactory()
    prompt = Prompt(slug=starter.slug, name=starter.name, brand=brand,
                    channel=starter.channel, max_length=starter.max_length)  # fmt: skip
    version = PromptVersion(prompt=prompt, number=1, template=starter.template, model="m")
    product = ProductFactory(name="AeroStride Runner 7")
    for audience in ({"segment": SegmentFactory()}, {"customer": CustomerFactory()}):
        rendered = prompting.render(
            version=version, prompt=prompt, brand=brand, product=product, **audience
        )
        instruction = rendered.messages[1]["content"].split("</data>", 1)[1]
        assert "{" not in instruction and "}" not in instruction
        assert "AeroStride Runner 7" in instruction
        assert f"{starter.max_length} characters" in instruction
        assert "Rationale" not in instruction


def test_the_sms_and_subject_line_limits_are_the_channels_own():
    assert starters.starter("sms").max_length == 160
    assert starters.starter("email-subject").max_length <= 60
