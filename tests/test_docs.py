"""The documentation stays true to the code: docs/configuration.md is generated from utils/config.py, and the
README stays a short page for users with the two platforms' recipes."""
import ast
import re
from dataclasses import fields
from pathlib import Path

from utils import config, config_docs, kinds

REPO = Path(__file__).resolve().parent.parent
REGENERATE = "python -m utils.config_docs > docs/configuration.md"


def test_configuration_page_is_the_generated_one(capsys):
    assert config_docs.main() == 0
    printed = capsys.readouterr().out
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert printed == config_docs.render()
    assert page == printed, f"docs/configuration.md is out of date with utils/config.py: run `{REGENERATE}`"


def test_every_key_is_documented_with_its_default():
    assert config_docs.undocumented() == [], (
        "fields of Config without a comment in utils/config.py: add a trailing comment saying what it does, "
        f"then run `{REGENERATE}`")
    page = config_docs.render()
    parsed = {f.name: f for f in config_docs.config_fields(config_docs.CONFIG_SOURCE.read_text(encoding="utf-8"))}
    assert list(parsed) == [f.name for f in fields(config.Config)]
    defaults = config.Config()
    for name, f in parsed.items():
        assert f"| `{name}` |" in page
        try:
            written = ast.literal_eval(f.default)
        except (ValueError, SyntaxError):  # not a literal (a default_factory): shown by reference
            continue
        assert written == getattr(defaults, name), f"{name}: the page shows {f.default}"
    for profile, values in config.PROFILES.items():
        assert f"### `{profile}`" in page
        flat = {f"{scope}.{k}": v for scope, d in values.get("schedules", {}).items() for k, v in d.items()}
        for key in [k for k in values if k != "schedules"] + list(flat):
            assert f"| `{key}` |" in page.split(f"### `{profile}`")[1].split("### ")[0], (profile, key)
    for kind in kinds.names() + config.STAGES + tuple(config.SCHEDULE_FIELDS):
        assert f"`{kind}`" in page


def test_a_new_field_changes_the_page():
    """What makes the first test fail when a field is added without regenerating the page."""
    source = config_docs.CONFIG_SOURCE.read_text(encoding="utf-8")
    anchor = next(line + "\n" for line in source.splitlines() if line.startswith("    seed: int = 0 "))
    assert anchor in source
    with_new = source.replace(anchor, anchor + "    new_knob: float = 0.5   # what the new knob does,\n"
                                                "                            # said on two lines\n")
    page = config_docs.render(with_new)
    assert page != config_docs.render(source)
    assert "| `new_knob` | float | `0.5` |" in page and "what the new knob does, said on two lines" in page
    without_comment = source.replace(anchor, anchor + "    silent_knob: int = 1\n")
    assert config_docs.undocumented(without_comment) == ["silent_knob"]


def test_tables_are_valid_markdown():
    """Every table row has its header's number of cells (escaped pipes do not count)."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        in_code = False
        for i, line in enumerate(lines):
            if line.startswith("```"):
                in_code = not in_code
            if in_code or not line.startswith("|") or i == 0 or lines[i - 1].startswith("|"):
                continue
            table = [line]
            for follow in lines[i + 1:]:
                if not follow.startswith("|"):
                    break
                table.append(follow)
            cells = [len(re.split(r"(?<!\\)\|", row.strip())) - 2 for row in table]
            assert len(table) >= 2 and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", table[1]), f"{path.name}:{i + 1}"
            assert set(cells) == {cells[0]}, f"{path.name}:{i + 1}: rows of {sorted(set(cells))} cells"


def test_readme_is_short_and_has_the_platform_recipes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    headings = [line.lstrip("#").strip() for line in readme.splitlines() if line.startswith("#")]
    for section in ("Run on Kaggle", "Run on Colab"):
        assert section in headings, section
        body = readme.split(f"## {section}")[1].split("\n## ")[0]
        assert re.search(r"^1\. ", body, re.M), f"{section}: numbered steps"
        assert "./run_all.sh --profile full" in body
    assert "--set platform=kaggle-2xt4" in readme and "--set platform=colab-t4" in readme
    for link in re.findall(r"\]\(((?:docs|data|outputs)/[^)#]+)", readme):
        assert (REPO / link).exists(), link
