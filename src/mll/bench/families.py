"""The evaluation protocol's statistics, per split (dev | test) and task family.

- `families`: each method's mean accuracy over a family's tasks with a 95% two-level bootstrap
  interval (tasks, then images within each task; `mll.bench.stats.family_bootstrap`), and how many
  tasks and images it rests on.
- `paired`: MLL against every other method, an exact McNemar test per task on the same images,
  Holm-corrected over all the family's comparisons (every task x method) at alpha 0.05: a *win* is
  a task where MLL is significantly better after correction, a *loss* one where it is significantly
  worse, a *tie* the rest. The discordant counts pooled over the family's images come with it.

A seeded method (several draws) enters the intervals with each image's mean correctness over the
draws and the paired tests with its first draw. Bootstrap draws are seeded from the names of the
split, family and method, so a report is reproducible to the bit.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from mll.bench.stats import family_bootstrap, hits_array, holm, mcnemar, mcnemar_p

ALPHA = 0.05
N_BOOT = 2000
HEADLINE = "mll"


def task_family(info: dict) -> str:
    """A task's family from its description in the cells document (user-name tasks: `user_names`)."""
    if info.get("base"):
        return "user_names"
    return info.get("family") or "in_domain"


def task_split(info: dict, tasks: dict[str, dict]) -> str:
    """dev | test; a user-name task is in its base task's split."""
    if info.get("base") and info["base"] in tasks:
        return task_split(tasks[info["base"]], tasks)
    return info.get("split") or "dev"


def _hits(cells: list[dict]) -> tuple[dict, dict]:
    """({(task, method): mean correctness per image over draws}, {(task, method): first draw's hits})."""
    draws: dict[tuple[str, str], list[np.ndarray]] = {}
    for c in cells:
        if c.get("status", "ok") == "ok" and isinstance(c.get("hits"), str) and c["hits"]:
            draws.setdefault((c["task"], c["method"]), []).append(hits_array(c["hits"]))
    mean = {k: np.mean(np.stack(v), axis=0) for k, v in draws.items() if len({len(h) for h in v}) == 1}
    first = {k: v[0] for k, v in draws.items()}
    return mean, first


def task_hits(cells: list[dict]) -> dict[tuple[str, str], np.ndarray]:
    """{(task, method): each image's correctness, averaged over a seeded method's draws}."""
    return _hits(cells)[0]


def _seed(*names: str) -> int:
    return zlib.crc32("/".join(names).encode())


def _r(x: float) -> float:
    return round(float(x), 4)


def protocol_blocks(cells: dict, methods: list[str]) -> dict[str, Any]:
    """`split`, `families` and `paired` of `reports/benchmark.json` from the cells document."""
    tasks: dict[str, dict] = cells.get("tasks") or {}
    mean_hits, first_hits = _hits(cells.get("cells") or [])
    split = {t: task_split(info, tasks) for t, info in tasks.items()}
    groups: dict[tuple[str, str], list[str]] = {}
    for t, info in tasks.items():
        groups.setdefault((split[t], task_family(info)), []).append(t)

    families: dict[str, dict[str, dict]] = {}
    paired: dict[str, dict[str, dict]] = {}
    for (sp, fam), names in groups.items():
        fam_out: dict[str, dict] = {}
        for m in methods:
            hs = [(t, mean_hits[(t, m)]) for t in names if (t, m) in mean_hits]
            if not hs:
                continue
            mean, lo, hi = family_bootstrap([h for _, h in hs], N_BOOT, _seed(sp, fam, m))
            fam_out[m] = {
                "mean": _r(mean),
                "ci_low": _r(lo),
                "ci_high": _r(hi),
                "n_tasks": len(hs),
                "n_images": int(sum(len(h) for _, h in hs)),
            }
        if fam_out:
            families.setdefault(sp, {})[fam] = fam_out
        tests = []  # (method, task, Paired)
        for m in methods:
            if m == HEADLINE:
                continue
            for t in names:
                a, b = first_hits.get((t, HEADLINE)), first_hits.get((t, m))
                if a is not None and b is not None and len(a) == len(b):
                    tests.append((m, t, mcnemar(a, b)))
        if not tests:
            continue
        adjusted = holm([p.p_value for _, _, p in tests])
        out: dict[str, dict] = {}
        for (m, t, p), q in zip(tests, adjusted):
            row = out.setdefault(m, {"wins": 0, "ties": 0, "losses": 0, "mll_only": 0, "other_only": 0, "tasks": {}})
            significant = q < ALPHA and p.a_only != p.b_only
            verdict = ("wins" if p.a_only > p.b_only else "losses") if significant else "ties"
            row[verdict] += 1
            row["mll_only"] += p.a_only
            row["other_only"] += p.b_only
            row["tasks"][t] = {"mll_only": p.a_only, "other_only": p.b_only, "p": _r(p.p_value), "p_holm": _r(q)}
        for row in out.values():
            row["p_pooled"] = _r(mcnemar_p(row["mll_only"], row["other_only"]))
        paired.setdefault(sp, {})[fam] = out
    return {"split": split, "families": families, "paired": paired}


def families_table(summary: dict, label=lambda m: m) -> str:
    """Per split (test first) and family: each method's accuracy with its 95% CI, tasks and images,
    and how it fares against MLL (Holm-corrected per-task wins / ties / losses of MLL, and the
    discordant images pooled over the family). `label` names a method key for display."""
    fams, paired = summary.get("families") or {}, summary.get("paired") or {}
    if not fams:
        return "No per-image results, so no family statistics."
    lines = []
    for sp in [s for s in ("test", "dev") if s in fams]:
        lines += [
            f"**{sp} split**" + (" (frozen settings, run once per release)" if sp == "test" else " (used for tuning)"),
            "",
            "| family | method | accuracy [95% CI] | tasks | images | MLL vs it: W/T/L "
            "| MLL-only / its-only images (p) |",
            "|---|---|---|---:|---:|---|---|",
        ]
        for fam, by_method in fams[sp].items():
            for m, e in by_method.items():
                p = (paired.get(sp) or {}).get(fam, {}).get(m)
                wtl = DASH if p is None else f"{p['wins']}/{p['ties']}/{p['losses']}"
                disc = DASH if p is None else f"{p['mll_only']} / {p['other_only']} ({p_text(p['p_pooled'])})"
                name = f"**{label(m)}**" if m == HEADLINE else label(m)
                lines.append(
                    f"| {fam} | {name} | {e['mean']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] | "
                    f"{e['n_tasks']} | {e['n_images']} | {wtl} | {disc} |"
                )
        lines.append("")
    lines.append(
        "CI: bootstrap over tasks, then images (2,000 draws). W/T/L: tasks where MLL is significantly better "
        f"/ not significantly different / significantly worse (exact McNemar, Holm-corrected over the family, "
        f"alpha {ALPHA}). p: exact McNemar on the family's pooled images."
    )
    return "\n".join(lines)


DASH = "–"


def p_text(p: float) -> str:
    """A p-value as read: below the report's 4-decimal rounding it is "<1e-4", not 0."""
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"
