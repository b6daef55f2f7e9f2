"""The model card's prose comes from model_card/template.md without the editor's note in it."""

from __future__ import annotations

import model_card


def test_card_markdown_has_the_template_prose_but_not_the_edit_me_note():
    raw = model_card.TEMPLATE.read_text()
    assert "<!-- Edit me" in raw  # the note stays in the file, for whoever edits it
    card = {"model_name": "taxi", "version": "7", "template": model_card.template_text()}
    text = model_card.to_markdown(card)
    assert "<!--" not in text and "Edit me" not in text
    assert "## Intended use" in text and "## Limitations" in text


def test_every_comment_is_dropped_and_the_prose_kept(tmp_path):
    path = tmp_path / "template.md"
    path.write_text("<!-- a\nmulti-line note -->\n## Use\n\nkeep <!-- inline --> this\n")
    assert model_card.template_text(path) == "## Use\n\nkeep this\n"
    assert model_card.template_text(tmp_path / "absent.md") == ""
