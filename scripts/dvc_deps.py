"""Keep dvc.yaml's code deps equal to each stage's import closure.

Why: `dvc repro` reruns a stage only when one of its declared deps changes, and hand-kept lists of
`.py` deps go stale as the package grows or moves (modules that no stage lists: editing them reran
nothing, preprocessing included). Whole-folder deps are no fix either: one edit anywhere in
`src/mll/hub` would retrain the whole hub. So the code deps of a stage are derived here, file by file,
from what its entry point really imports.

How: the entry point is the script in the stage's `cmd` (`python flows/data.py ...` -> flows/data.py,
`python -m mll.bench.report` -> src/mll/bench/report.py). Its closure is found by static analysis
with `ast` (nothing is imported, so it is fast and has no side effects) over every import statement of
every module reached: top-level and function-local imports alike (a lazily imported module still
changes what the stage does), `from pkg import name` where name may be a submodule, relative imports,
and `importlib.import_module("literal")`. Importing `a.b.c` also counts `a/__init__.py` and
`a/b/__init__.py`. Names resolve like Python does for the stage: first the script's own folder
(the repo root for `-m`), then `src/`; names that resolve to nothing in the project (stdlib,
third-party) are ignored.

Only code deps are managed: entries ending in `.py`, and whole folders inside `src/` or `flows/`
(replaced by the files the stage really imports). Data deps (splits, models, labels, CSVs, and
non-Python files under src/) are kept as they are, in their order, after the sorted code deps.
`foreach` stages are handled through their `do:` body. Stages whose cmd runs no Python are left alone.

    python scripts/dvc_deps.py            # print each stage's code deps
    python scripts/dvc_deps.py --check    # exit 1 listing, per stage, missing and superfluous deps
    python scripts/dvc_deps.py --write    # rewrite the deps blocks in dvc.yaml (comments kept)

`--write` edits only the text of the `deps:` blocks (no yaml round trip, which would drop comments and
reflow the file), then checks that the result parses to the same pipeline with the new deps.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import json
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC_DIR = "src"
CODE_DIRS = ("src", "flows")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_SHELL_OPS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
_PY_OPTS_WITH_ARG = {"-W", "-X", "-Q"}


# --------------------------------------------------------------------------------- import closure


@dataclass(frozen=True)
class Entry:
    """A stage's entry point: the files Python runs first and the folders it searches for imports.

    `start` is the script for `python x.py`; for `python -m a.b` it is a/__init__.py and a/b.py
    (or a/b/__init__.py and a/b/__main__.py for a package)."""

    start: tuple[Path, ...]
    search: tuple[Path, ...]


def module_chain(name: str, search: Iterable[Path]) -> list[Path]:
    """Files Python runs to import `name`: each package's `__init__.py` and the module itself.

    The top-level name is looked up in `search` in order (like sys.path); the longest prefix that
    exists is returned, so `mll.config.load_section` gives mll/__init__.py and mll/config.py.
    Namespace packages (folders without `__init__.py`) are not followed."""
    parts = [p for p in name.split(".") if p]
    if not parts:
        return []
    for root in search:
        chain: list[Path] = []
        here = root
        for part in parts:
            pkg_init = here / part / "__init__.py"
            if pkg_init.is_file():
                chain.append(pkg_init)
                here = here / part
                continue
            mod = here / f"{part}.py"
            if mod.is_file():
                chain.append(mod)
            break
        if chain:
            return chain
    return []


def module_name(path: Path, search: Iterable[Path]) -> str | None:
    """Dotted name of a file under one of the search folders (`pkg/__init__.py` -> `pkg`)."""
    for root in search:
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)
    return None


def imported_names(source: str, package: str, filename: str = "<module>") -> set[str]:
    """Every module name a module's source may import, anywhere in it (functions, try, if blocks).

    `from a.b import c` yields `a.b` and `a.b.c` (c may be a submodule; if it is only an attribute,
    resolving `a.b.c` stops at `a.b`). Relative imports are resolved against `package`."""
    tree = ast.parse(source, filename=filename)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                base_parts = parts[: max(keep, 0)]
                if node.module:
                    base_parts = base_parts + node.module.split(".")
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            if base:
                names.add(base)
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                names.add(arg.value)
    return names


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"import_module", "__import__"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


@functools.cache
def _file_imports(path: Path, package: str, stamp: tuple[int, int]) -> frozenset[str]:
    """imported_names of a file, parsed once per version (`stamp`: mtime, size); stages share modules."""
    try:
        return frozenset(imported_names(path.read_text(encoding="utf-8"), package, str(path)))
    except SyntaxError as exc:
        raise SystemExit(f"dvc_deps: cannot parse {path}: {exc}") from exc


def import_closure(entry: Entry, root: Path) -> set[Path]:
    """The entry file and every project file it imports, transitively (absolute paths)."""
    root = root.resolve()
    seen: set[Path] = set()
    todo = [p.resolve() for p in entry.start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = module_name(path, entry.search) or ""
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        stat = path.stat()
        for imported in _file_imports(path, package, (stat.st_mtime_ns, stat.st_size)):
            for dep in module_chain(imported, entry.search):
                dep = dep.resolve()
                if dep not in seen and dep.is_relative_to(root):
                    todo.append(dep)
    return seen


def entry_points(cmd: str | list[str], root: Path) -> list[Entry]:
    """The Python entry points a stage's cmd runs (`python x.py`, `python -m pkg.mod`), in order."""
    commands = [cmd] if isinstance(cmd, str) else list(cmd)
    src = (root / SRC_DIR).resolve()
    cwd = root.resolve()
    entries: list[Entry] = []
    for command in commands:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if not _PYTHON.match(Path(token).name):
                continue
            entry = _python_entry(tokens[i + 1 :], cwd, src)
            if entry is not None:
                entries.append(entry)
    return entries


def _python_entry(args: list[str], cwd: Path, src: Path) -> Entry | None:
    """The entry of one `python ...` invocation given its arguments; None for `python -c`."""
    i = 0
    while i < len(args) and args[i] not in _SHELL_OPS:
        arg = args[i]
        if arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            mod = args[i + 1] if arg == "-m" else arg[2:]
            search = (cwd, src)
            chain = module_chain(mod, search)
            if len(chain) != len(mod.split(".")):
                raise SystemExit(f"dvc_deps: cannot find module {mod!r} (searched {', '.join(map(str, search))})")
            if chain[-1].name == "__init__.py":  # python -m pkg runs pkg/__main__.py
                chain.append(chain[-1].parent / "__main__.py")
                if not chain[-1].is_file():
                    raise SystemExit(f"dvc_deps: package {mod!r} has no __main__.py to run")
            return Entry(tuple(chain), search)
        if arg == "-c":
            return None
        if arg in _PY_OPTS_WITH_ARG:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        script = (cwd / arg).resolve()
        if not script.is_file():
            raise SystemExit(f"dvc_deps: stage runs {arg}, which does not exist under {cwd}")
        return Entry((script,), (script.parent, src))
    return None


def stage_code_deps(cmd: str | list[str], root: Path) -> list[str] | None:
    """Sorted code deps of a stage, relative to the repo root, or None when its cmd runs no Python."""
    entries = entry_points(cmd, root)
    if not entries:
        return None
    files: set[Path] = set()
    for entry in entries:
        files |= import_closure(entry, root)
    return sorted(p.relative_to(root.resolve()).as_posix() for p in files)


# --------------------------------------------------------------------------------- dvc.yaml model


@dataclass
class Stage:
    """One stage of dvc.yaml as far as deps are concerned (`body` is `do:` for foreach stages)."""

    name: str
    body: dict[str, Any]
    deps: list[Any] = field(default_factory=list)


def read_stages(dvc_yaml: Path) -> list[Stage]:
    """The stages of a dvc.yaml, in file order, unexpanded (a foreach stage is one entry)."""
    doc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    stages: list[Stage] = []
    for name, stage in (doc.get("stages") or {}).items():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        stages.append(Stage(str(name), body, list(body.get("deps") or [])))
    return stages


def is_code_dep(dep: Any, root: Path) -> bool:
    """A `.py` file, or a whole folder in (or equal to) a code folder such as `src/` or `flows/`.

    Other files under src/ (resources a module reads) are data deps: kept, never touched."""
    if not isinstance(dep, str):
        return False
    path = dep.strip().rstrip("/")
    if path.endswith(".py"):
        return True
    in_code_dir = any(path == d or path.startswith(d + "/") for d in CODE_DIRS)
    return in_code_dir and ((root / path).is_dir() or dep.strip().endswith("/"))


@dataclass
class Report:
    """What `--check` found wrong in one stage's code deps."""

    stage: str
    missing: list[str]
    superfluous: list[str]


def wanted_deps(dvc_yaml: Path, root: Path) -> dict[str, list[str]]:
    """Stage name -> its code deps, for every stage whose cmd runs Python."""
    out: dict[str, list[str]] = {}
    for stage in read_stages(dvc_yaml):
        cmd = stage.body.get("cmd")
        if str(stage.body.get("wdir", ".")).strip("/") not in {"", "."}:
            raise SystemExit(
                f"dvc_deps: stage {stage.name} sets wdir, which this tool does not handle "
                "(its paths would be relative to wdir)"
            )
        code = stage_code_deps(cmd, root) if cmd else None
        if code is not None:
            out[stage.name] = code
    return out


def check(dvc_yaml: Path, root: Path) -> list[Report]:
    """Per stage, the closure files its deps miss and the code deps outside its closure."""
    wanted = wanted_deps(dvc_yaml, root)
    reports: list[Report] = []
    for stage in read_stages(dvc_yaml):
        if stage.name not in wanted:
            continue
        have = {str(d).strip().rstrip("/") for d in stage.deps if is_code_dep(d, root)}
        want = set(wanted[stage.name])
        if have != want:
            reports.append(Report(stage.name, sorted(want - have), sorted(have - want)))
    return reports


# --------------------------------------------------------------------------------- text rewrite


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#\-][^#]*?|-)\s*:(?:\s+(?P<rest>.*))?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _key_of(line: str) -> tuple[int, str, str] | None:
    """(indent, key, rest) for a `key: rest` line, else None."""
    m = _KEY.match(line.rstrip("\n"))
    if not m or _is_filler(line) or line.lstrip().startswith("- "):
        return None
    key = m.group("key").strip()
    with contextlib.suppress(yaml.YAMLError):
        key = str(yaml.safe_load(key))
    return len(m.group("indent")), key, (m.group("rest") or "").strip()


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the block that starts below lines[start-1] and is indented deeper than `indent`."""
    end = start
    for j in range(start, len(lines)):
        if _is_filler(lines[j]):
            continue
        if _indent(lines[j]) <= indent:
            break
        end = j + 1
    return end


def _children(lines: list[str], start: int, end: int) -> Iterator[tuple[int, int, str, str]]:
    """(line index, indent, key, rest) of the direct mapping keys in lines[start:end]."""
    child_indent: int | None = None
    for j in range(start, end):
        if _is_filler(lines[j]):
            continue
        key = _key_of(lines[j])
        if child_indent is None:
            child_indent = _indent(lines[j])
        if key and key[0] == child_indent:
            yield j, key[0], key[1], key[2]


def _quote(path: str) -> str:
    try:
        if yaml.safe_load(path) == path and not path.startswith(("-", "?", ":", "!", "&", "*", "{", "[")):
            return path
    except yaml.YAMLError:
        pass
    return json.dumps(path)


def _deps_block(lines: list[str], key_line: int, key_indent: int, rest: str, code: list[str], root: Path) -> list[str]:
    """New lines for a `deps:` key: code deps first (sorted), then the other deps with their comments."""
    key_text = lines[key_line].split(":", 1)[0].rstrip()
    if rest and not rest.startswith("#"):  # flow style `deps: [a, b]`: re-emit as a block list
        items = [([], [f"{' ' * (key_indent + 2)}- {_quote(str(d))}\n"], d) for d in yaml.safe_load(rest) or []]
        item_indent = key_indent + 2
    else:
        end = _sequence_end(lines, key_line + 1, key_indent)
        items, item_indent = _split_items(lines[key_line + 1 : end], key_indent)
    pad = " " * item_indent
    out = [f"{key_text}:{('  ' + rest) if rest.startswith('#') else ''}\n"]
    kept: list[str] = []
    old_lines: dict[Any, str] = {}  # code deps that stay keep their line (and its trailing comment)
    for comments, body, value in items:
        if is_code_dep(value, root):
            out.extend(comments)  # a comment above a code dep stays, above the code deps
            if len(body) == 1:
                old_lines[value] = body[0]
        else:
            kept.extend(comments + body)
    out.extend(old_lines.get(p, f"{pad}- {_quote(p)}\n") for p in code)
    out.extend(kept)
    return out


def _sequence_end(lines: list[str], start: int, key_indent: int) -> int:
    """End of the block sequence under a key (items may sit at the key's own indent, YAML allows it)."""
    end = start
    for j in range(start, len(lines)):
        line = lines[j]
        if _is_filler(line):
            continue
        ind = _indent(line)
        if ind > key_indent or (ind == key_indent and line.lstrip().startswith("-")):
            end = j + 1
            continue
        break
    return end


def _split_items(block: list[str], key_indent: int) -> tuple[list[tuple[list[str], list[str], Any]], int]:
    """Sequence items as (comment lines above, item lines, parsed value), and the items' indent."""
    item_indent = next((_indent(line) for line in block if line.lstrip().startswith("-")), key_indent + 2)
    raw: list[tuple[list[str], list[str]]] = []
    pending: list[str] = []
    for line in block:
        if line.lstrip().startswith("-") and _indent(line) == item_indent:
            raw.append((pending, [line]))
            pending = []
        elif _is_filler(line) or not raw:
            pending.append(line)
        else:  # continuation of the item above (a long or multi-line value)
            raw[-1][1].extend([*pending, line])
            pending = []
    items = [(comments, body, (yaml.safe_load("".join(body)) or [None])[0]) for comments, body in raw]
    return items, item_indent


def rewrite(text: str, wanted: dict[str, list[str]], root: Path) -> str:
    """dvc.yaml text with each wanted stage's code deps replaced; everything else stays byte for byte."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    top = ((j, _key_of(line)) for j, line in enumerate(lines))
    stages_line = next((j for j, k in top if k and k[0] == 0 and k[1] == "stages"), None)
    if stages_line is None:
        return text
    edits: list[tuple[int, int, list[str]]] = []  # (start, end, replacement), applied bottom-up
    stages_end = _block_end(lines, stages_line + 1, 0)
    for j, ind, name, _ in _children(lines, stages_line + 1, stages_end):
        if name not in wanted:
            continue
        stage_end = _block_end(lines, j + 1, ind)
        body_start, body_end = j + 1, stage_end
        for k, kind, key, _ in _children(lines, j + 1, stage_end):
            if key == "do":  # a foreach stage: its deps are in the `do:` body
                body_start, body_end = k + 1, _block_end(lines, k + 1, kind)
        keys = {key: (k, kind, rest) for k, kind, key, rest in _children(lines, body_start, body_end)}
        if "deps" in keys:
            k, kind, rest = keys["deps"]
            flow = rest and not rest.startswith("#")
            end = k + 1 if flow else _sequence_end(lines, k + 1, kind)
            edits.append((k, end, _deps_block(lines, k, kind, rest, wanted[name], root)))
        elif "cmd" in keys:
            k, kind, _ = keys["cmd"]
            end = _block_end(lines, k + 1, kind)
            pad = " " * kind
            block = [f"{pad}deps:\n"] + [f"{pad}  - {_quote(p)}\n" for p in wanted[name]]
            edits.append((end, end, block))
    for start, end, block in sorted(edits, reverse=True):
        lines[start:end] = block
    new = "".join(lines)
    return new if text.endswith("\n") or not text else new.rstrip("\n")


def write(dvc_yaml: Path, root: Path) -> bool:
    """Rewrite dvc.yaml's code deps in place; True when the file changed."""
    text = dvc_yaml.read_text(encoding="utf-8")
    wanted = wanted_deps(dvc_yaml, root)
    new = rewrite(text, wanted, root)
    _verify(text, new, wanted, root)
    if new == text:
        return False
    dvc_yaml.write_text(new, encoding="utf-8")
    return True


def _verify(old: str, new: str, wanted: dict[str, list[str]], root: Path) -> None:
    """The rewrite must parse to the old pipeline with only the code deps replaced."""
    before = yaml.safe_load(old) or {}
    after = yaml.safe_load(new) or {}
    for name, code in wanted.items():
        stage = before["stages"][name]
        body = stage.get("do", stage)
        body["deps"] = list(code) + [d for d in body.get("deps") or [] if not is_code_dep(d, root)]
    if before != after:
        raise SystemExit(
            "dvc_deps: the text rewrite of dvc.yaml went wrong (it would change more than deps); nothing written"
        )


# --------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Derive each dvc.yaml stage's code deps from the import closure of its entry point "
        "(static, via ast). Without --check/--write, print them."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="exit 1 and list, per stage, the missing and the superfluous code deps"
    )
    mode.add_argument(
        "--write", action="store_true", help="rewrite the code deps in dvc.yaml in place (comments and layout kept)"
    )
    parser.add_argument("--root", type=Path, default=REPO, help="project root (default: %(default)s)")
    parser.add_argument("--dvc-yaml", type=Path, default=None, help="the pipeline file (default: ROOT/dvc.yaml)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    dvc_yaml: Path = args.dvc_yaml or root / "dvc.yaml"

    if args.check:
        reports = check(dvc_yaml, root)
        for r in reports:
            print(f"{r.stage}:")
            for p in r.missing:
                print(f"  missing      {p}")
            for p in r.superfluous:
                print(f"  superfluous  {p}")
        if reports:
            print(
                f"{dvc_yaml.name}: code deps out of date in {len(reports)} stage(s); "
                f"fix with: python scripts/dvc_deps.py --write",
                file=sys.stderr,
            )
            return 1
        print(f"{dvc_yaml.name}: every stage's code deps match its import closure")
        return 0
    if args.write:
        changed = write(dvc_yaml, root)
        print(f"{dvc_yaml.name}: {'code deps rewritten' if changed else 'already up to date'}")
        return 0
    for name, code in wanted_deps(dvc_yaml, root).items():
        print(f"{name}:")
        for p in code:
            print(f"  - {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
