from pathlib import Path

import pytest

from mll.data.wordnet import WordNetMissingError, is_wnid, prepare_wordnet, resolve_synset, synset_from_wnid, wnid


def test_imagenet_wnids_resolve(wordnet):
    assert synset_from_wnid("n02084071").name() == "dog.n.01"
    assert synset_from_wnid("n02123045").name() == "tabby.n.01"
    assert wordnet.get_version() == "3.0"
    assert len(list(wordnet.all_synsets("n"))) == 82115


def test_resolve_forms():
    assert wnid(resolve_synset("dog")) == "n02084071"
    assert wnid(resolve_synset("dog.n.01")) == "n02084071"
    assert wnid(resolve_synset(" n02084071 ")) == "n02084071"
    assert is_wnid("n02084071") and not is_wnid("dog") and not is_wnid("n123")


@pytest.mark.parametrize("bad", ["n99999999", "qwertyuiopzz", "notaname.n.77"])
def test_resolve_errors_are_clear(bad):
    with pytest.raises(ValueError) as e:
        resolve_synset(bad)
    assert bad in str(e.value)


def test_missing_debian_files_name_the_package(tmp_path: Path):
    src = tmp_path / "wordnet"
    src.mkdir()
    (src / "data.noun").write_text("")
    with pytest.raises(WordNetMissingError) as e:
        prepare_wordnet(tmp_path / "nltk", src=src)
    msg = str(e.value)
    assert "apt-get install" in msg and "wordnet-base" in msg and "wordnet-sense-index" in msg


def test_prepared_layout_has_lexnames(wordnet):
    from mll.data.wordnet import default_nltk_dir

    root = default_nltk_dir() / "corpora" / "wordnet"
    lex = (root / "lexnames").read_text().splitlines()
    assert len(lex) == 45 and lex[5].split("\t")[1] == "noun.animal"
    assert not any(p.is_symlink() for p in root.iterdir())
