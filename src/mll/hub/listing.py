"""`mll hub list` as a library: filter the hub's cards, describe each in one row, count the rows.

At 60+ experts the list is only readable filtered and summarised. `HubFilter` holds the filters
(domain, source kind, backbone, tags, a concept of the SDAG, a name glob; all must hold);
`HubFilter.check` refuses a value the hub does not know with one line listing the values it has;
`list_hub` turns the cards (each read once, by the caller) into sorted `ListRow`s; `format_table`
and `footer` are the text the CLI prints, `ListRow.to_dict` the JSON.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mll.data.sdag import SDAG
from mll.data.wordnet import is_wnid
from mll.hub.cards import ExpertCard

# tags that mark an expert as not independent evidence; the benchmark counts them apart
FLAG_TAGS = ("weak", "redundant", "noisy", "misleading")
# the documented tag vocabulary (cards.py): a filter on one of these is valid even when no card has it
KNOWN_TAGS = (*FLAG_TAGS, "derived", "corrupted", "style")
NO_DOMAIN = "(no domain)"  # how a card without a domain is shown and counted


class ListFilterError(ValueError):
    """A filter value names nothing the hub has (the message lists what it has)."""


def has_tag(card: ExpertCard, tag: str) -> bool:
    """`tag` is one of the card's tags, or the kind of one (`corrupted` matches `corrupted:blur`)."""
    return any(t == tag or t.startswith(f"{tag}:") for t in card.tags)


def _closest(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _by_value(counts: Counter) -> list[tuple[str, int]]:
    """Counts by value, alphabetically, models without a domain last."""
    return sorted(counts.items(), key=lambda kv: (kv[0] == NO_DOMAIN, kv[0]))


def _present(counts: Counter) -> str:
    return ", ".join(f"{v} {n}" for v, n in _by_value(counts)) or "none"


@dataclass(frozen=True)
class Concept:
    """A resolved `--concept`: the node, every node at or below it, and how the text was read."""

    text: str
    node: str
    name: str
    below: frozenset[str]  # the node and its descendants
    method: str = "exact"  # "exact" (an id, a synset name) or the reading `mll match` reports
    other_senses: tuple[str, ...] = ()  # synset names of the runners-up, best first

    def describe(self) -> str:
        how = "" if self.method in ("exact", "lemma") else f" [{self.method}]"
        others = f"; other senses: {', '.join(self.other_senses)} (name one to pick it)" if self.other_senses else ""
        return f"concept {self.text!r} -> {self.node} {self.name}{how}, {len(self.below) - 1} concepts below{others}"


def resolve_concept(sdag: SDAG, text: str, cards: Sequence[ExpertCard] = ()) -> Concept:
    """A synset id, synset name or word -> the SDAG node it names.

    An id or a synset name is looked up as `mll sdag show` does; a word is matched as `mll match`
    matches a class name (`mll.solve.matching.Matcher`: case, plurals, compounds, one-key typos;
    among senses WordNet's frequency and what `cards` cover decide), without the sentence encoder.
    A word nothing matches is refused with the lemmas spelt most like it.
    """
    from mll.solve.matching import Matcher

    text = text.strip()
    if is_wnid(text) or ".n." in text:
        hits = sdag.lookup(text)
        if not hits:
            raise ListFilterError(
                f"--concept {text!r} is no node of the SDAG; check it with `mll sdag show` "
                "(an id like n02084071 or a name like dog.n.01), or give a word"
            )
        node, method, others = hits[0], "exact", ()
    else:
        head_names: dict[str, set[str]] = {}
        for c in cards:
            for h in c.head:
                head_names.setdefault(h.name, set()).add(h.synset)
        covered = {s for c in cards for s in c.synsets}
        matcher = Matcher(sdag, covered=covered, head_names=head_names, use_embeddings=False)
        m = matcher.match([text], top=5)[0]
        if m.synset is None:
            raise ListFilterError(f"--concept {text!r} names no SDAG node{_concept_hint(sdag, text)}")
        node, method = m.synset, m.method
        others = tuple(c.name for c in m.candidates if c.id != node)[:4]
    return Concept(
        text=text,
        node=node,
        name=sdag.name(node),
        below=frozenset(sdag.descendants(node) | {node}),
        method=method,
        other_senses=others,
    )


def _concept_hint(sdag: SDAG, text: str) -> str:
    """`; did you mean dog, ...? (...)`: lemmas one edit away, most frequent first, else spelt alike."""
    from mll.solve.names import Lexicon, edits1, squash

    lex = Lexicon(sdag)
    keys = [k for e in edits1(squash(text)) for k in lex.squashed().get(e, [])]

    def freq(key: str) -> int:
        return max((sdag.lemma_count(n, key) for n in sdag.lookup(key)), default=0)

    near = sorted(set(keys), key=lambda k: (-freq(k), k))[:4]
    if not near:
        near = difflib.get_close_matches(text.lower().replace(" ", "_"), sdag.lemma_keys(), n=4)
    did = f"; did you mean {', '.join(near)}?" if near else ""
    return f"{did} (a word, a synset id like n02084071 or a name like dog.n.01; `mll sdag show WORD` looks one up)"


@dataclass(frozen=True)
class HubFilter:
    """What `mll hub list` keeps: every given filter must hold (None / empty = no filter)."""

    domain: str | None = None
    source: str | None = None
    backbone: str | None = None
    tags: tuple[str, ...] = ()  # each must match (`has_tag`)
    concept: Concept | None = None  # a head class at or below it
    name: str | None = None  # fnmatch glob on the model name

    def check(
        self, cards: Sequence[ExpertCard], source_kinds: Iterable[str] = (), backbones: Iterable[str] = ()
    ) -> None:
        """Refuse a domain, source, backbone or tag that no card has and that is not a registered
        source kind / backbone or a documented tag: one line listing what the hub has."""
        checks: list[tuple[str, str | None, Counter, set[str]]] = [
            ("domain", self.domain, Counter(c.domain or NO_DOMAIN for c in cards), set()),
            ("source", self.source, Counter(c.source for c in cards), set(source_kinds)),
            ("backbone", self.backbone, Counter(c.backbone for c in cards if c.backbone), set(backbones)),
        ]
        tag_counts = Counter(t for c in cards for t in sorted({x.split(":")[0] for x in c.tags} | set(c.tags)))
        checks += [("tag", t, tag_counts, set(KNOWN_TAGS)) for t in self.tags]
        for what, value, counts, registered in checks:
            if value is None or value in counts or value in registered:
                continue
            also = f" (registered: {', '.join(sorted(registered))})" if registered - set(counts) else ""
            raise ListFilterError(
                f"--{what} {value!r} matches no model{_closest(value, {*counts, *registered})}; "
                f"the hub's {what}s: {_present(counts)}{also}"
            )

    def keeps(self, card: ExpertCard) -> bool:
        return (
            (self.domain is None or (card.domain or NO_DOMAIN) == self.domain)
            and (self.source is None or card.source == self.source)
            and (self.backbone is None or card.backbone == self.backbone)
            and all(has_tag(card, t) for t in self.tags)
            and (self.concept is None or any(s in self.concept.below for s in card.synsets))
            and (self.name is None or fnmatch.fnmatchcase(card.name, self.name))
        )


@dataclass(frozen=True)
class ListRow:
    """One model as `mll hub list` shows it."""

    name: str
    domain: str
    source: str
    backbone: str
    architecture: str
    classes: int
    tags: tuple[str, ...]
    covers: str
    labeled: bool
    concept_classes: tuple[str, ...] = field(default=())  # head classes under `--concept`

    @property
    def flagged(self) -> tuple[str, ...]:
        """The FLAG_TAGS this model carries (as a tag or a tag's kind)."""
        return tuple(f for f in FLAG_TAGS if any(t == f or t.startswith(f"{f}:") for t in self.tags))

    def to_dict(self, with_concept: bool = False) -> dict:
        d = {
            "name": self.name,
            "domain": self.domain,
            "source": self.source,
            "backbone": self.backbone,
            "architecture": self.architecture,
            "classes": self.classes,
            "tags": list(self.tags),
            "covers": self.covers,
            "labeled": self.labeled,
        }
        if with_concept:
            d["concept_classes"] = list(self.concept_classes)
        return d


def list_hub(
    cards: Sequence[ExpertCard],
    flt: HubFilter,
    covers: Callable[[ExpertCard], str],
    labeled: Callable[[str], bool],
) -> list[ListRow]:
    """The cards `flt` keeps as rows, by domain (models without one last) then name."""
    rows = []
    for c in cards:
        if not flt.keeps(c):
            continue
        hits = tuple(h.name for h in c.head if flt.concept and h.synset in flt.concept.below)
        rows.append(
            ListRow(
                name=c.name,
                domain=c.domain,
                source=c.source,
                backbone=c.backbone,
                architecture=c.architecture,
                classes=c.num_classes,
                tags=c.tags,
                covers=covers(c),
                labeled=labeled(c.name),
                concept_classes=hits,
            )
        )
    return sorted(rows, key=lambda r: (not r.domain, r.domain, r.name))


def _cells(r: ListRow, with_concept: bool) -> list[str]:
    src = f"{r.source}/{r.backbone}" if r.backbone else r.source
    cells = [r.name, r.domain or "-", src, str(r.classes), ",".join(r.tags) or "-", r.covers]
    if with_concept:
        hits = r.concept_classes
        cells.append(f"{len(hits)}: {', '.join(hits[:3])}" + (f", +{len(hits) - 3}" if len(hits) > 3 else ""))
    return [*cells, "yes" if r.labeled else "no"]


def format_table(rows: Sequence[ListRow], with_concept: bool = False, group_by_domain: bool = False) -> list[str]:
    """Aligned lines, one per row under a header; `group_by_domain` puts a `== domain (n) ==` line
    before each domain's rows (columns stay aligned across groups)."""
    concept = ["CONCEPT"] if with_concept else []
    header = ["NAME", "DOMAIN", "SOURCE", "CLASSES", "TAGS", "COVERS", *concept, "LABELED"]
    table = [header] + [_cells(r, with_concept) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(x.ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header)]
    domain: str | None = None
    counts = Counter(r.domain for r in rows)
    for r, cells in zip(rows, table[1:], strict=True):
        if group_by_domain and r.domain != domain:
            domain = r.domain
            out.append(f"== {domain or NO_DOMAIN} ({counts[domain]}) ==")
        out.append(line(cells))
    return out


def footer(rows: Sequence[ListRow], total: int, invalid: int = 0) -> str:
    """`N models[ (of T in the hub)]: domain n, ...; k tagged weak/redundant/noisy/misleading (weak a, ...)`."""
    n = len(rows)
    text = f"{n} models" + (f" (of {total} in the hub)" if n != total else "")
    domains = Counter(r.domain or NO_DOMAIN for r in rows)
    if rows:
        text += ": " + _present(domains)
    flagged = [r for r in rows if r.flagged]
    per_tag = Counter(t for r in rows for t in r.flagged)
    detail = ", ".join(f"{t} {per_tag[t]}" for t in FLAG_TAGS if per_tag[t])
    text += f"; {len(flagged)} tagged {'/'.join(FLAG_TAGS)}" + (f" ({detail})" if detail else "")
    if invalid:
        text += f"; {invalid} invalid"
    return text


def composition(cards: Sequence[ExpertCard]) -> dict:
    """What the hub is made of: models by domain and source (backbone heads by backbone), how many
    are independent, and how many carry each flag tag (weak, redundant, noisy, misleading). The
    benchmark records it, so a reader can tell independent experts from deliberately bad ones."""
    table: Counter = Counter()
    flags: Counter = Counter()
    for c in cards:
        kind = f"{c.source}/{c.backbone}" if c.backbone else f"{c.source}/{c.architecture}"
        table[(c.domain or NO_DOMAIN, kind)] += 1
        for t in FLAG_TAGS:
            flags[t] += has_tag(c, t)
    flagged = sum(any(has_tag(c, t) for t in FLAG_TAGS) for c in cards)
    return {
        "models": len(cards),
        "independent": len(cards) - flagged,
        "flagged": {t: flags[t] for t in FLAG_TAGS},
        "flagged_models": {
            c.name: [t for t in FLAG_TAGS if has_tag(c, t)] for c in cards if any(has_tag(c, t) for t in FLAG_TAGS)
        },
        "backbones": sorted({c.backbone for c in cards if c.backbone}),
        "by_domain_and_source": [{"domain": d, "source": k, "models": n} for (d, k), n in sorted(table.items())],
    }
