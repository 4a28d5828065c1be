import pytest

from generation.llm import LLMError, split_rationale


@pytest.mark.parametrize(
    "content",
    [
        "Great shoe.\n\nRationale: speaks to runners.",
        "Great shoe.\n\n**Rationale:** speaks to runners.",
        "Great shoe.\n\n## Rationale: speaks to runners.",
        "Great shoe.\nrationale : speaks to runners.",
    ],
)
def test_split_rationale_separates_copy_from_rationale(content):
    assert split_rationale(content) == ("Great shoe.", "speaks to runners.")


def test_split_rationale_uses_the_last_rationale_line():
    copy, rationale = split_rationale("Line one.\nRationale: a\nMore.\nRationale: b")
    assert copy == "Line one.\nRationale: a\nMore."
    assert rationale == "b"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Just copy, no reasons.", "no 'Rationale:'"),
        ("Rationale: only reasons", "no copy"),
        ("Copy.\nRationale:   ", "empty"),
    ],
)
def test_split_rationale_refuses_answers_without_both_parts(content, message):
    with pytest.raises(LLMError, match=message):
        split_rationale(content)
