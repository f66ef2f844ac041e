"""The README's provider table is the capability tables, not a copy that can drift."""

from pathlib import Path

from routeraudio.providers import capability_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_provider_table_matches_capabilities():
    text = README.read_text()
    start = text.index("-->\n", text.index("<!-- provider-table")) + 4
    end = text.index("<!-- /provider-table -->")
    assert text[start:end] == capability_table(), (
        "README provider table is stale: regenerate it from routeraudio.providers.capability_table()")


def test_readme_documents_every_close_code():
    from routeraudio.errors import CLOSE_CODES

    text = README.read_text()
    for code in CLOSE_CODES:
        assert f"| {code} |" in text
