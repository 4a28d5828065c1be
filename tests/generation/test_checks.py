from generation.checks import (
    check_banned_phrases,
    check_length,
    check_placeholders,
    check_protected_terms,
)


def test_length_fails_over_the_limit_and_says_by_how_much():
    assert check_length("x" * 10, max_length=10).passed
    result = check_length("x" * 11, max_length=10)
    assert not result.passed
    assert "11 characters" in result.message


def test_protected_terms_must_appear_verbatim():
    result = check_protected_terms("The Aerostride runner", terms=["AeroStride"])
    assert not result.passed
    assert "'AeroStride'" in result.message


def test_banned_phrases_match_whole_words_only():
    assert check_banned_phrases("A secure fit", phrases=["cure"]).passed
    result = check_banned_phrases("A Miracle shoe", phrases=["miracle"])
    assert not result.passed


def test_unrendered_placeholders_are_flagged():
    assert not check_placeholders("Hello {segment_name}").passed
    assert check_placeholders("Hello runners").passed
