import pytest

from mll.cli import main
from mll.data.sdag import ROOT, SDAG, build_sdag

DOG, TABBY, CARNIVORE = "n02084071", "n02123045", "n02075296"


def test_known_hierarchy(small_sdag):
    g = small_sdag
    assert g.name(DOG) == "dog.n.01"
    anc = {g.name(a) for a in g.ancestors(DOG)}
    assert {"canine.n.02", "carnivore.n.01", "animal.n.01", "entity.n.01", "domestic_animal.n.01"} <= anc
    assert DOG not in g.ancestors(DOG)
    assert g.depth(ROOT) == 0 and g.depth(DOG) == 8  # WordNet min_depth of dog.n.01
    assert g.path_to_root(DOG)[-1] == ROOT and g.path_to_root(DOG)[0] == DOG
    assert DOG in g.descendants(CARNIVORE) and TABBY in g.descendants(CARNIVORE)
    assert g.is_ancestor(CARNIVORE, DOG) and not g.is_ancestor(DOG, CARNIVORE)


@pytest.mark.parametrize(
    "a,b,lca",
    [
        ("dog.n.01", "tabby.n.01", "carnivore.n.01"),
        ("gym_shoe.n.01", "sandal.n.01", "shoe.n.01"),
        ("gym_shoe.n.01", "boot.n.01", "footwear.n.02"),
        ("seven.n.01", "three.n.01", "digit.n.01"),
        ("car.n.01", "jeep.n.01", "car.n.01"),
        ("dog.n.01", "car.n.01", "whole.n.02"),
    ],
)
def test_lowest_common_ancestor(small_sdag, a, b, lca):
    g = small_sdag
    assert g.name(g.lca(g.resolve(a), g.resolve(b))) == lca


def test_edges_are_hypernym_to_hyponym_and_acyclic(small_sdag):
    import networkx as nx

    g = small_sdag.graph
    assert nx.is_directed_acyclic_graph(g)
    assert g.has_edge(small_sdag.resolve("canine.n.02"), DOG)
    assert [n for n in g if g.in_degree(n) == 0] == [ROOT]
    assert g.nodes[DOG]["definition"].startswith("a member of the genus Canis")


def test_nearest_covered_prefers_descendants_then_ancestors(small_sdag):
    g = small_sdag
    shoe, sneaker, sandal = g.resolve("shoe.n.01"), g.resolve("gym_shoe.n.01"), g.resolve("sandal.n.01")
    footwear = g.resolve("footwear.n.02")
    assert g.nearest_covered(shoe, [sneaker, footwear]) == (sneaker, 1)
    assert g.nearest_covered(sneaker, [footwear, g.resolve("boot.n.01")])[0] == footwear
    assert g.nearest_covered(sandal, [sandal]) == (sandal, 0)
    assert g.nearest_covered(sandal, []) is None


def test_lookup_by_id_name_and_lemma(small_sdag):
    g = small_sdag
    assert g.lookup(DOG) == [DOG] and g.lookup("dog.n.01") == [DOG]
    assert g.lookup("dog")[0] == DOG and g.lookup("Dog")[0] == DOG
    assert g.lookup("n99999999") == [] and g.lookup("zebra") == []
    with pytest.raises(KeyError, match=r"mll sdag build|synset id"):
        g.resolve("zebra")


def test_save_load_roundtrip(small_sdag, tmp_path):
    small_sdag.save(tmp_path)
    h = SDAG.load(tmp_path)
    assert len(h) == len(small_sdag)
    assert sorted(h.edges()) == sorted(small_sdag.edges())
    assert h.node(DOG) == small_sdag.node(DOG)
    assert h.meta["scope"] == "closure"


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="mll sdag build"):
        SDAG.load(tmp_path)
    (tmp_path / "sdag.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="rebuild"):
        SDAG.load(tmp_path)


def test_cli_show_by_name_and_id_print_the_same_node(small_sdag_dir, capsys):
    assert main(["sdag", "show", "dog", "--sdag", str(small_sdag_dir)]) == 0
    by_name = capsys.readouterr().out
    assert main(["sdag", "show", DOG, "--sdag", str(small_sdag_dir)]) == 0
    by_id = capsys.readouterr().out
    first = lambda s: s.splitlines()[:5]  # noqa: E731 - the node block (other senses differ by design)
    assert first(by_name) == first(by_id)
    assert "entity.n.01 > " in by_id and by_id.rstrip().splitlines()[4].endswith("dog.n.01")
    assert "children:" in by_id


def test_cli_unknown_node_is_one_line_error(small_sdag_dir, capsys):
    assert main(["sdag", "show", "flibbertigibbet", "--sdag", str(small_sdag_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mll: error:") and "\n" not in err


@pytest.mark.slow
def test_full_noun_graph(tmp_path):
    g = build_sdag()
    assert len(g) == 82115
    g.save(tmp_path)
    h = SDAG.load(tmp_path)
    assert len(h) == 82115 and len(h.edges()) == len(g.edges())
    assert h.name(h.lca(DOG, TABBY)) == "carnivore.n.01"
    assert len(h.descendants(ROOT)) == 82114  # everything hangs under entity
