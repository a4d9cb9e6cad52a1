"""The README's benchmark block: the text between two marker lines, replaced in place."""

from __future__ import annotations

from pathlib import Path

README_START = "<!-- benchmark:start -->"
README_END = "<!-- benchmark:end -->"


def _marker_line(lines: list[str], marker: str, readme: Path) -> int | None:
    hits = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(hits) > 1:
        raise ValueError(f"{readme}: marker {marker!r} appears {len(hits)} times; keep exactly one")
    return hits[0] if hits else None


def sync_readme(readme: Path, table_md: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the text between the start and end marker lines with table_md; False if there are no markers."""
    readme = Path(readme)
    text = readme.read_text()
    lines = text.splitlines(keepends=True)
    i, j = _marker_line(lines, start, readme), _marker_line(lines, end, readme)
    if i is None and j is None:
        return False
    if i is None or j is None:
        missing = start if i is None else end
        raise ValueError(
            f"{readme}: has {(end if i is None else start)!r} but not {missing!r}; "
            f"add a line {missing!r} so the benchmark block has both markers"
        )
    if j < i:
        raise ValueError(f"{readme}: {end!r} comes before {start!r}; put the start marker first")
    # lines[i] ends with a newline: the end marker follows it
    new = "".join(lines[: i + 1]) + table_md.strip("\n") + "\n" + "".join(lines[j:])
    if new != text:  # leave the file untouched (mtime too) when nothing changed
        readme.write_text(new)
    return True
