"""docs/configuration.md, generated from the configuration's own documentation in utils/config.py.

    python -m utils.config_docs > docs/configuration.md

Every key of `Config` with its type, default, allowed values and meaning. The meaning is the field's comment in
utils/config.py: its trailing comment and the comment lines that continue it, paired with the field by reading
the source (`ast` for the fields, `tokenize` for the comments); the `# ---- ...` lines that group the fields give
the tables. Then the schedule scopes (`SCHEDULE_FIELDS`, `STAGES`, the kinds of utils/kinds.py, the default scopes) and each
profile's overrides with their comments. tests/test_docs.py checks that docs/configuration.md is this command's
output, so a field added without regenerating the page (or without a comment) fails there.
"""
from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from . import kinds as registry

CONFIG_SOURCE = Path(__file__).with_name("config.py")

# Fields whose line in utils/config.py has no comment yet, or only the notebooks that use it (`# 01`); a comment
# there takes precedence (a notebook-only comment is followed by this).
FALLBACK = {  # the two keys whose comment is not a sentence of their own
    "schedules": "schedule fields per scope (`SCOPE.FIELD=VALUE`), over the keys above marked *per model*",
}

SCOPE_TEXT = """\
A schedule field can be set for every model (`--set epochs=20`) or for a scope: a stage, a model kind, or both,
as `[STAGE.][KIND.]FIELD`. The most specific scope wins: base < stage < kind < stage.kind.

* stages: {stages} (`kfold`: the K-fold members of 02 and 06; `augmentation`: 03's experiments)
* model kinds: {kinds}
* schedule fields: {fields}

Examples: `--set fusion_transformer.epochs=6`, `--set kfold.epochs=25`, `--set kfold.fusion_transformer.min_steps=600`,
`--set text_finetuned.training_mode=end_to_end`; in a notebook, `SET = {{"kfold.sampling": "over"}}`."""


@dataclass
class Field:
    name: str
    type: str
    default: str
    group: str
    comment: list[str] = field(default_factory=list)


def _comments(source: str) -> dict[int, tuple[int, str, bool]]:
    """line -> (column, text without '#', whether the comment is alone on its line)."""
    out, code_lines = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip(), False)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            for line in range(tok.start[0], tok.end[0] + 1):
                code_lines.add(line)
    return {line: (col, text, line not in code_lines) for line, (col, text, _) in out.items()}


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node.value
    raise KeyError(f"utils/config.py defines no {name}")


def _group_title(text: str) -> str | None:
    match = re.match(r"-{2,}\s*(.*)$", text)
    return match.group(1).strip() if match else None


def config_fields(source: str) -> list[Field]:
    """`Config`'s fields in order, each with its group and comment lines."""
    tree, comments = ast.parse(source), _comments(source)
    cls = _class(tree, "Config")
    body = [n for n in cls.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    indent = body[0].col_offset
    out: list[Field] = []
    group, leading = "", []
    previous_end = cls.lineno  # the class line: its group's title follows it
    for node in body:
        if not isinstance(node, ast.AnnAssign):
            break
        for line in range(previous_end + 1, node.lineno):
            if line not in comments or not comments[line][2]:
                continue
            col, text, _ = comments[line]
            if col > indent and out and not leading:  # a continuation of the previous field's comment
                out[-1].comment.append(text)
            elif _group_title(text) is not None:
                group, leading = _group_title(text), []
            else:
                leading.append(text)
        name = node.target.id
        default = ast.get_source_segment(source, node.value) if node.value is not None else ""
        if name == "schedules":
            default = "see [Schedules](#schedules)"
        first = comments.get(node.lineno)  # a multi-line default's inner comments belong to its entries
        trailing = [first[1]] if first and not first[2] else []
        out.append(Field(name, ast.get_source_segment(source, node.annotation), default, group, leading + trailing))
        leading, previous_end = [], node.end_lineno
    # comment lines continuing the last field's comment
    line = previous_end + 1
    while line in comments and comments[line][2] and comments[line][0] > indent:
        out[-1].comment.append(comments[line][1])
        line += 1
    return out


def _dict_entries(source: str, node: ast.Dict, comments, prefix: str = "") -> tuple[list, list[tuple[int, str]]]:
    """(key, value source, trailing comment) for each entry, nested dicts flattened as `outer.inner` (a profile's
    `schedules` as `scope.field`); and the standalone comment lines inside the dict as (line, text)."""
    rows, notes, seen = [], [], set()
    for key, value in zip(node.keys, node.values):
        name = prefix + ast.literal_eval(key)
        if isinstance(value, ast.Dict):
            inner, inner_notes = _dict_entries(source, value, comments,
                                               prefix="" if not prefix and name == "schedules" else name + ".")
            rows += inner
            notes += inner_notes
            continue
        line = value.end_lineno
        text = comments[line][1] if line in comments and not comments[line][2] and line not in seen else ""
        seen.add(line)
        rows.append((name, ast.get_source_segment(source, value), text))
    nested = [(v.lineno, v.end_lineno) for v in node.values if isinstance(v, ast.Dict)]
    notes += [(line, comments[line][1]) for line in range(node.lineno, node.end_lineno + 1)
              if line in comments and comments[line][2] and not any(a <= line <= b for a, b in nested)]
    return rows, sorted(notes)


def _paragraphs(notes: list[tuple[int, str]]) -> list[str]:
    """Comment lines on consecutive source lines as one paragraph each."""
    out: list[str] = []
    last = None
    for line, text in notes:
        if last is not None and line == last + 1:
            out[-1] += " " + text
        else:
            out.append(text)
        last = line
    return out


def _meaning(f: Field) -> str:
    text = " ".join(f.comment)
    if not text:
        return FALLBACK.get(f.name, "")
    if re.fullmatch(r"[0-9, ]+", text) and f.name in FALLBACK:  # only the notebooks that read it
        return f"{text}: {FALLBACK[f.name]}"
    return text


def _value(text: str) -> str:
    """A value as `--set` takes it: booleans as true/false."""
    return {"True": "true", "False": "false"}.get(text, text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def _code(text: str) -> str:
    return f"`{text}`" if text and not text.startswith("see ") else text


def _allowed(name: str, type_: str) -> str:
    from . import config

    if name in config.CHOICES:
        return "one of " + ", ".join(f"`{c}`" if c else '`""`' for c in config.CHOICES[name])
    if name in config.RANGES:
        low, high = config.RANGES[name]
        return f"≥ {low}" if high is None else f"{low} to {high}"
    if type_ == "bool":
        return "true or false"
    return ""


def _profiles(source: str, tree, comments) -> list[str]:
    """Each profile's overrides, with their comments."""
    profiles = _assigned(tree, "PROFILES")
    out = ["", "## Profiles", "",
            "A profile is the defaults above with these keys changed (`./run_all.sh --profile NAME`); `--set` "
            "applies on top. Schedule scopes are written `scope.field`. A run of the `full` profile, or with "
            "`platform` set, is then adapted to its machine by its plan (`python -m utils.plan`), which prints "
            "every key it changes and why."]
    for key, value in zip(profiles.keys, profiles.values):
        name = ast.literal_eval(key)
        rows, notes = _dict_entries(source, value, comments)
        out += ["", f"### `{name}`", ""]
        if not rows:
            out.append("The defaults above, unchanged.")
            continue
        out += ["| key | value | note |", "|---|---|---|"]
        out += [f"| `{k}` | {_cell(_code(_value(v)))} | {_cell(n)} |" for k, v, n in rows]
        if notes:
            out += [""] + [f"* {_cell(n)}" for n in _paragraphs(notes)]
    return out


def render(source: str | None = None) -> str:
    """The whole page (Markdown), from `source` (default: utils/config.py as it is)."""
    source = CONFIG_SOURCE.read_text(encoding="utf-8") if source is None else source
    tree, comments = ast.parse(source), _comments(source)
    fields_ = config_fields(source)
    schedule_fields = [k.value for k in _assigned(tree, "SCHEDULE_FIELDS").keys]
    stages = list(ast.literal_eval(_assigned(tree, "STAGES")))
    kinds = list(registry.names())
    out = [
        "# Configuration",
        "",
        "<!-- generated by `python -m utils.config_docs > docs/configuration.md` from utils/config.py; edit the "
        "comments there, not this file -->",
        "",
        "One typed configuration, `Config` in `utils/config.py`: its defaults are the demo profile; the `full` and "
        "`tiny` profiles change only the keys listed under [Profiles](#profiles). Set any key with "
        "`./run_all.sh --set KEY=VALUE` (repeatable) or in a notebook's first cell, `SET = {\"KEY\": value}`. "
        "An unknown key, a value of the wrong type or a value outside its allowed range fails at once, before "
        "anything runs, naming the valid keys or values. `python -m utils.config --list` prints every key with its "
        "default. Booleans take `true`/`false` (also `1`/`0`, `yes`/`no`). A run records its fully resolved "
        "configuration in `<run>/config.json`.",
        "",
        "Column *per model*: a schedule field, which a scope can set per stage or model kind "
        "(see [Schedules](#schedules)).",
    ]
    groups: list[str] = []
    for f in fields_:
        if f.group not in groups:
            groups.append(f.group)
    for group in groups:
        out += ["", f"## {group[:1].upper() + group[1:] if group else 'Other keys'}", "",
                "| key | type | default | allowed | per model | meaning |", "|---|---|---|---|---|---|"]
        for f in (f for f in fields_ if f.group == group):
            meaning = _meaning(f)
            out.append(f"| `{f.name}` | {f.type} | {_cell(_code(_value(f.default)))} | {_cell(_allowed(f.name, f.type))} | "
                       f"{'yes' if f.name in schedule_fields else ''} | {_cell(meaning)} |")
    # schedules
    sched = next(n for n in _class(tree, "Config").body if isinstance(n, ast.AnnAssign) and n.target.id == "schedules")
    sched_dict = next(n for n in ast.walk(sched.value) if isinstance(n, ast.Dict))
    out += ["", "## Schedules", "", SCOPE_TEXT.format(stages=", ".join(f"`{s}`" for s in stages),
                                                      kinds=", ".join(f"`{k}`" for k in kinds),
                                                      fields=", ".join(f"`{k}`" for k in schedule_fields)),
            "", "The default scopes (the demo profile's):", "", "| scope | settings | note |", "|---|---|---|"]
    for key, value in zip(sched_dict.keys, sched_dict.values):
        line = value.end_lineno
        note = comments[line][1] if line in comments and not comments[line][2] else ""
        settings = ", ".join(f"`{ast.literal_eval(k)}={ast.get_source_segment(source, v)}`"
                             for k, v in zip(value.keys, value.values))
        out.append(f"| `{ast.literal_eval(key)}` | {_cell(settings)} | {_cell(note)} |")
    out += _profiles(source, tree, comments)
    return "\n".join(out) + "\n"


def undocumented(source: str | None = None) -> list[str]:
    """Fields with neither a comment in utils/config.py nor a FALLBACK entry."""
    source = CONFIG_SOURCE.read_text(encoding="utf-8") if source is None else source
    return [f.name for f in config_fields(source) if not _meaning(f)]


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
