"""How the rules read a text: sentence and paragraph ends, offsets that point at the right words,
whatever the whitespace and symbols around them."""

from __future__ import annotations

import pytest

from crawler.rules import load_rules

STORY = "Russia bought Shahed-136 drones from Iran, officials said."


@pytest.fixture(scope="module")
def shipped():
    return load_rules()


@pytest.fixture(scope="module")
def proximity(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "proximity.toml"
    path.write_text(
        """
[concepts.first]
en = ["alpha"]
[concepts.second]
en = ["omega"]
[rules.same-sentence]
when = "first SENTENCE second"
[rules.same-paragraph]
when = "first NEAR/5 second"
""",
        encoding="utf-8",
    )
    return load_rules([str(path)])


@pytest.mark.parametrize(
    ("text", "same_sentence", "same_paragraph"),
    [
        ("Alpha and omega.", True, True),
        ("Alpha. Omega.", False, True),
        ("Alpha?! Omega.", False, True),
        ("«Alpha.» Omega.", False, True),
        ("Alpha.omega, no space after the full stop", True, True),
        ("Alpha\nomega", False, True),
        ("Alpha\n\nomega", False, False),
        ("Alpha\r\n \r\nomega", False, False),
        ("Alpha;\n\n\n omega", False, False),
    ],
)
def test_sentences_end_at_stops_and_newlines_and_paragraphs_at_blank_lines(proximity, text, same_sentence, same_paragraph):
    fired = {m.rule for m in proximity.match(None, text, "en")}
    assert ("same-sentence" in fired) is same_sentence
    assert ("same-paragraph" in fired) is same_paragraph


@pytest.mark.parametrize(
    "text",
    [
        STORY,
        "İstanbul, Turkey.\n\n" + STORY,  # "İ" lower-cases to two characters
        "Ankara\r\n\r\n\tİSTANBUL:\x00 " + STORY.replace("drones", "1² drones"),
        "\n\n\n  " + STORY.upper() + "\n",
    ],
)
def test_story_is_flagged_and_every_term_points_at_its_words(shipped, text):
    (match,) = shipped.match(None, text, "en")
    assert match.suppliers == ("Iran",) and match.recipients == ("Russia",)
    for term in match.terms:
        assert text[term.start : term.end] == term.term
    assert {t.term.lower() for t in match.terms} >= {"russia", "bought", "shahed", "drones", "iran"}
    for start, end in match.highlights:
        assert match.snippet[start:end].lower() in {"russia", "bought", "shahed", "drones", "iran"}
