"""Offline WordNet 3.0: prepare Debian's dict files as an nltk corpus and hand out a reader.

nltk cannot download WordNet here, and nltk >= 3.10 refuses corpus paths outside `nltk.data.path`,
so the Debian files (`wordnet-base` + `wordnet-sense-index`) are *copied* into a project-owned
`nltk_data/corpora/wordnet` with the `lexnames` file Debian does not ship. Noun offsets equal
ImageNet wnids, which is why the project keys every concept as `n%08d`.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
from pathlib import Path

from mll.paths import cache_dir

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# The files nltk's reader opens; each names the Debian package that ships it.
_REQUIRED = {
    "data.noun": "wordnet-base",
    "index.noun": "wordnet-base",
    "noun.exc": "wordnet-base",
    "cntlist.rev": "wordnet-base",
    "index.sense": "wordnet-sense-index",
}
# The 45 lexicographer files in the order compiled into Debian's libwordnet (nltk needs the names).
_LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_POS_NUM = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
_WNID = re.compile(r"^n\d{8}$")

_lock = threading.Lock()
_reader = None


class WordNetMissingError(RuntimeError):
    """The Debian WordNet files are not installed."""


def default_nltk_dir() -> Path:
    """Where the project keeps its nltk_data (override with MLL_NLTK_DATA)."""
    env = os.environ.get("MLL_NLTK_DATA")
    return Path(env) if env else cache_dir() / "nltk_data"


def prepare_wordnet(nltk_dir: Path | None = None, src: Path = DEBIAN_WORDNET) -> Path:
    """Copy Debian's WordNet into `nltk_dir/corpora/wordnet` (idempotent); return `nltk_dir`."""
    nltk_dir = Path(nltk_dir or default_nltk_dir())
    dst = nltk_dir / "corpora" / "wordnet"
    if (dst / "lexnames").is_file() and all((dst / f).is_file() for f in _REQUIRED):
        return nltk_dir
    missing = sorted({pkg for f, pkg in _REQUIRED.items() if not (src / f).is_file()})
    if missing:
        raise WordNetMissingError(
            f"WordNet 3.0 files not found in {src}; install them with "
            f"`sudo apt-get install {' '.join(missing)}` (or run `make setup`)"
        )
    tmp = dst.with_name("wordnet.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():  # copy, not symlink: nltk rejects links that escape its root
            shutil.copy(f, tmp / f.name)
    with open(tmp / "lexnames", "w") as fh:
        for i, name in enumerate(_LEXNAMES):
            fh.write(f"{i:02d}\t{name}\t{_POS_NUM[name.split('.')[0]]}\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)  # atomic: a half-copied corpus is never picked up
    return nltk_dir


def get_wordnet(nltk_dir: Path | None = None):
    """Return a ready nltk WordNet 3.0 reader (prepared on first use, then shared)."""
    global _reader
    with _lock:
        if _reader is None:
            import nltk

            root = str(prepare_wordnet(nltk_dir))
            if root not in nltk.data.path:
                nltk.data.path.insert(0, root)
            from nltk.corpus.reader.wordnet import WordNetCorpusReader

            with warnings.catch_warnings():
                # English only: the multilingual (OMW) data is deliberately absent.
                warnings.simplefilter("ignore", UserWarning)
                _reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)
        return _reader


def wnid(synset) -> str:
    """ImageNet-style id of a noun synset: `n` + 8-digit offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def is_wnid(text: str) -> bool:
    """True when `text` looks like a noun synset id such as `n02084071`."""
    return bool(_WNID.match(text))


def synset_from_wnid(node_id: str):
    """The nltk noun synset for `n%08d`; ValueError naming the id if it does not exist."""
    if not is_wnid(node_id):
        raise ValueError(f"{node_id!r} is not a synset id; expected 'n' followed by 8 digits, e.g. n02084071")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # nltk warns and returns None on a bad offset
            synset = get_wordnet().synset_from_pos_and_offset("n", int(node_id[1:]))
    except Exception:  # nltk raises WordNetError / ValueError on some bad offsets
        synset = None
    if synset is None:
        raise ValueError(f"no WordNet 3.0 noun synset has id {node_id}")
    return synset


def resolve_synset(text: str):
    """Resolve a wnid (`n02084071`), a synset name (`dog.n.01`) or a noun (`dog`, first sense)."""
    text = text.strip()
    if is_wnid(text):
        return synset_from_wnid(text)
    wn = get_wordnet()
    if re.match(r"^.+\.n\.\d+$", text):
        try:
            return wn.synset(text)
        except Exception as exc:
            raise ValueError(f"no WordNet noun synset named {text!r}") from exc
    senses = wn.synsets(text.replace(" ", "_"), pos="n")
    if not senses:
        raise ValueError(f"{text!r} is not a WordNet noun; give a synset id (n02084071) or name (dog.n.01)")
    return senses[0]
