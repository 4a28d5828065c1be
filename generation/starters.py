"""Starter templates: the first version of a prompt a marketing lead creates in the
browser, one per common channel, so that nobody starts from an empty textarea.

Each is a whole, working instruction, written with only the placeholders the
renderer fills (prompting.PLACEHOLDERS; tests/generation/test_starters.py renders
every one). What the renderer adds by itself is left out on purpose:

- the brand voice, the output format and the rationale rules are the system
  message's (prompting.output_rules), which follow the run's output mode: a starter
  that asked for "Rationale:" lines would contradict the JSON mode;
- the product's attributes, the protected terms, the banned phrases and the
  audience (a segment's rules and summary, or one customer's allowed attributes and
  the last messages they received) travel in the data block, so a starter points at
  them rather than repeating them.

The lead edits the template before creating the prompt, and every later version in
the studio; a starter is only where the first one comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.models import Prompt


@dataclass(frozen=True)
class Starter:
    key: str  # in the page's URL (?starter=sms)
    title: str
    description: str  # what it is for, on the page that offers it
    name: str  # the prompt's suggested name
    slug: str  # and slug
    channel: str  # Prompt.Channel
    max_length: int  # characters of copy
    template: str


_FACTS_ONLY = (
    "- Use only facts from the base description and the product's data. Do not invent "
    "features, materials, measurements, prices, discounts, offers or deadlines, and do "
    "not promise results."
)
_NAMES = (
    '- Use the product name "{product_name}" exactly as written; never translate or '
    "alter it or any other brand or product-line name."
)
_LANGUAGE = "- Write in the language with code {language}."
_LIMIT = "- Stay within {max_length} characters, spaces included."

STARTERS: tuple[Starter, ...] = (
    Starter(
        key="product-page",
        title="Product page",
        description="The description on the product's page, rewritten for each segment "
        "from the catalog's base copy.",
        name="Product page description",
        slug="product-page",
        channel=Prompt.Channel.PRODUCT_PAGE,
        max_length=600,
        template=(
            "Rewrite the {brand_name} product description below for the {channel}, for "
            'the audience segment "{segment_name}".\n\n'
            "Product: {product_name} ({category} / {subcategory})\n"
            "Base description: {product_description}\n\n"
            "Who is in the segment: {segment_summary}\n\n"
            "Rules:\n"
            f"{_LANGUAGE}\n{_LIMIT}\n{_NAMES}\n"
            "- Open with what matters most to this segment, then the concrete details "
            "that support it.\n"
            "- Speak to the segment as a whole, following its largest shares; do not "
            "single out a minority within it or address one person.\n"
            f"{_FACTS_ONLY}"
        ),
    ),
    Starter(
        key="email-subject",
        title="E-mail subject line",
        description="One subject line for a campaign e-mail featuring the product; short "
        "enough for a phone's inbox.",
        name="E-mail subject line",
        slug="email-subject",
        channel=Prompt.Channel.EMAIL,
        max_length=60,
        template=(
            "Write one subject line for a {brand_name} e-mail that features "
            '{product_name} ({category} / {subcategory}), for the audience segment "'
            '{segment_name}".\n\n'
            "Base description: {product_description}\n"
            "Who is in the segment: {segment_summary}\n\n"
            "Rules:\n"
            f"{_LANGUAGE}\n{_LIMIT} Phones show about the first 40, so put the point "
            "first.\n"
            "- One line, no line breaks, no quotation marks around it, no emoji, no "
            "ALL CAPS and no more than one exclamation mark.\n"
            "- Name the product or the one benefit this segment cares about most.\n"
            '- No false urgency or scarcity ("last chance", "only today") and nothing '
            'that reads like spam ("free!!!", "act now").\n'
            f"{_NAMES}\n{_FACTS_ONLY}"
        ),
    ),
    Starter(
        key="sms",
        title="SMS",
        description="A text message about the product, within one SMS of 160 characters.",
        name="SMS",
        slug="sms",
        channel=Prompt.Channel.SMS,
        max_length=160,
        template=(
            "Write one text message from {brand_name} about {product_name}, for the "
            'audience segment "{segment_name}".\n\n'
            "Base description: {product_description}\n"
            "Who is in the segment: {segment_summary}\n\n"
            "Rules:\n"
            f"{_LANGUAGE}\n{_LIMIT}\n"
            '- Start with the brand name followed by a colon ("{brand_name}: ...") so '
            "the reader knows who is writing.\n"
            "- One short sentence or two; plain characters only, no emoji and no "
            "markdown.\n"
            "- Add no link, no opt-out line and no code: the sending system appends "
            "what the law and the campaign need.\n"
            f"{_NAMES}\n{_FACTS_ONLY}"
        ),
    ),
    Starter(
        key="app-push",
        title="App push notification",
        description="The text of a push notification from the app, read at a glance on "
        "a lock screen.",
        name="App push notification",
        slug="app-push",
        channel=Prompt.Channel.APP,
        max_length=120,
        template=(
            "Write the text of one push notification from the {brand_name} app about "
            '{product_name} ({subcategory}), for the audience segment "{segment_name}".'
            "\n\n"
            "Base description: {product_description}\n"
            "Who is in the segment: {segment_summary}\n\n"
            "Rules:\n"
            f"{_LANGUAGE}\n{_LIMIT} A lock screen shows about 100, so the first "
            "words must carry the message.\n"
            "- One sentence that gives the reader a reason to open the app now: the "
            "benefit this segment cares about most, said concretely.\n"
            "- No title, no quotation marks, at most one emoji, no ALL CAPS, and no "
            "false urgency.\n"
            f"{_NAMES}\n{_FACTS_ONLY}"
        ),
    ),
    Starter(
        key="review-request",
        title="Post-purchase review request",
        description="A journey tool's one-to-one message, a few days after delivery, "
        "asking a customer to review what they bought (the message's purpose comes "
        "with each request, e.g. 'review request 7 days after delivery').",
        name="Post-purchase review request",
        slug="review-request",
        channel=Prompt.Channel.EMAIL,
        max_length=500,
        template=(
            "Write the body of a short {brand_name} e-mail to a customer who recently "
            "bought {product_name} ({category} / {subcategory}), asking them to review "
            "it. The message's purpose, as the journey tool sent it: {purpose}\n"
            "The audience: {segment_name}. {segment_summary}\n\n"
            "About the product: {product_description}\n\n"
            "Rules:\n"
            f"{_LANGUAGE}\n{_LIMIT}\n"
            "- Thank them for the purchase in one sentence, then ask for an honest "
            "review in one or two: what they would tell a friend about how "
            "{product_name} works for them.\n"
            "- Mention one concrete detail of the product they may have noticed in use, "
            "taken from its data.\n"
            "- Ask for an honest opinion, good or bad; never ask for a positive or "
            "five-star review, and offer no reward, discount or prize for one.\n"
            "- Use the customer's attributes in the data only to choose what to "
            "mention; never repeat them back, and never guess their name.\n"
            "- Do not repeat the wording of the previous messages in the data.\n"
            "- No subject line, no greeting placeholder and no signature: the journey "
            "tool adds them.\n"
            f"{_NAMES}"
        ),
    ),
)

_BY_KEY = {starter.key: starter for starter in STARTERS}


def starter(key: str) -> Starter | None:
    """The starter named `key`, or None."""
    return _BY_KEY.get(key)
