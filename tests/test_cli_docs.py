"""The README's generated tables (record fields, error kinds, exit codes) are what the code makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_extract.cli import docs
from vllm_extract.cli.exit_codes import markdown as exit_codes_markdown
from vllm_extract.output.records import error_kinds_markdown, record_fields_markdown

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_tables_are_generated_from_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert text == docs.render(text), f"README.md's generated tables are stale; regenerate: {docs.COMMAND}"
    # Each region is there, and holds exactly its generator's table.
    for name, make in (
        ("record-fields", record_fields_markdown),
        ("error-kinds", error_kinds_markdown),
        ("exit-codes", exit_codes_markdown),
    ):
        assert f"<!-- generated: {name} -->\n{make()}<!-- end generated: {name} -->" in text


def test_render_rewrites_a_stale_region_and_refuses_unknown_or_missing_ones() -> None:
    regions = "".join(
        f"<!-- generated: {name} -->\nSTALE-TABLE\n<!-- end generated: {name} -->\n" for name in docs.REGIONS
    )
    text = "# title\n\n" + regions + "tail\n"
    rendered = docs.render(text)
    assert "STALE-TABLE" not in rendered and rendered.startswith("# title\n\n") and rendered.endswith("tail\n")
    assert exit_codes_markdown() in rendered and "| `poison_request` |" in rendered
    assert docs.render(rendered) == rendered
    with pytest.raises(ValueError, match="unknown generated region 'nope'"):
        docs.render(text + "<!-- generated: nope -->\nx\n<!-- end generated: nope -->\n")
    with pytest.raises(ValueError, match="no generated region exit-codes"):
        docs.render(text.replace("<!-- generated: exit-codes -->", "<!-- exit-codes -->"))


def test_the_command_updates_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text(encoding="utf-8").replace("| 75 |", "| 76 |"), encoding="utf-8")
    assert docs.main([str(readme)]) == 0 and "updated" in capsys.readouterr().out
    assert readme.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")
    assert docs.main([str(readme)]) == 0 and "up to date" in capsys.readouterr().out
    assert docs.main([]) == 2
