from tui.load.prompts import build_prompt, title_text

import pytest


def test_story_prompt_is_the_articles():
    assert build_prompt("output", 400) == "tell a story in 400 words:"


def test_title_prompt_has_the_long_text_without_its_source_note():
    prompt = build_prompt("input", 25)
    assert prompt.startswith("give a title for below text in 10 words: It is a truth universally acknowledged")
    assert "#" not in prompt and "Source" not in prompt
    assert 450 <= len(title_text().split()) <= 500  # the article's text had about 484 words


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mode"):
        build_prompt("poem", 10)
