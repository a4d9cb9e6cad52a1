"""`mll hub list` at hub scale: filters, the one-line rows and footer, JSON, the unknown-value errors."""

import json
from pathlib import Path

import pytest
import torch

from mll.cli import main
from mll.hub.backbones import get_backbone
from mll.hub.cards import CARD_FILE, ExpertCard, HeadClass, InputConfig
from mll.hub.store import Hub

TINY = InputConfig(size=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
SYN = {  # all in the small test SDAG (conftest.TEST_VOCAB_NAMES)
    "sandal": "n04133789",
    "sneaker": "n03472535",
    "boot": "n02872752",
    "jersey": "n03595614",
    "pullover": "n04021028",
    "shirt": "n04197391",
    "dog": "n02084071",
    "tabby": "n02123045",
    "car": "n02958343",
    "jeep": "n03594945",
    "zero": "n13742358",
    "seven": "n13744916",
}
# name: (domain, backbone ("" = a standalone timm model), head classes, tags)
MODELS = {
    "shoes-a": ("clothing", "", ("sandal", "sneaker", "boot"), ()),
    "shoes-weak": ("clothing", "", ("sandal", "boot"), ("weak", "derived")),
    "tops-noisy": ("clothing", "efficientnet-lite0", ("jersey", "pullover", "shirt"), ("noisy", "corrupted:blur")),
    "pets": ("photos", "efficientnet-lite0", ("dog", "tabby", "car"), ("redundant", "style:photo")),
    "digits-a": ("digits", "", ("zero", "seven"), ()),
    "misc": ("", "", ("car", "jeep"), ("misleading",)),
}
ORDER = ["shoes-a", "shoes-weak", "tops-noisy", "digits-a", "pets", "misc"]  # by domain, no domain last


def _card(name: str) -> tuple[ExpertCard, dict[str, torch.Tensor]]:
    import timm

    domain, backbone, classes, tags = MODELS[name]
    head = tuple(HeadClass(c, SYN[c]) for c in classes)
    torch.manual_seed(0)
    if backbone:  # a linear probe on the shared backbone's features
        dim = get_backbone(backbone).feature_dim
        state = {"weight": torch.randn(len(head), dim) * 0.01, "bias": torch.zeros(len(head))}
        source, arch = "backbone_head", "linear"
    else:
        state = timm.create_model("test_resnet", pretrained=False, num_classes=len(head)).state_dict()
        source, arch = "timm", "test_resnet"
    card = ExpertCard(
        name=name,
        source=source,
        architecture=arch,
        weights="",
        weights_sha256="",
        input=TINY,
        head=head,
        backbone=backbone,
        domain=domain,
        tags=tags,
    )
    return card, state


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    hub = Hub(tmp_path_factory.mktemp("listhub") / "hub")
    for name in MODELS:
        card, state = _card(name)
        # a head on a backbone is not run here: loading it would load the EfficientNet-Lite backbone
        hub.add(card, state, verify=not card.backbone)
    return hub.root


@pytest.fixture
def run(hub_dir, small_sdag_dir, tmp_path, capsys):
    """`mll hub list ARGS` on the test hub: (exit code, stdout lines, stderr)."""

    def go(*args: str) -> tuple[int, list[str], str]:
        base = ["hub", "list", "--hub", str(hub_dir), "--sdag", str(small_sdag_dir), "--labels", str(tmp_path)]
        rc = main([*base, *args])
        out = capsys.readouterr()
        return rc, out.out.splitlines(), out.err

    return go


def _names(run, *args: str) -> list[str]:
    rc, out, err = run("--json", *args)
    assert rc == 0, err
    return [r["name"] for r in json.loads("\n".join(out))]


def test_one_aligned_line_per_model_sorted_by_domain_with_a_counting_footer(run):
    rc, out, _ = run()
    assert rc == 0
    header, rows, foot = out[0], out[1:-1], out[-1]
    assert header.split() == ["NAME", "DOMAIN", "SOURCE", "CLASSES", "TAGS", "COVERS", "LABELED"]
    assert [r.split()[0] for r in rows] == ORDER
    for col in ("DOMAIN", "SOURCE", "CLASSES", "TAGS", "COVERS", "LABELED"):  # aligned under the header
        at = header.index(col)
        assert all(r[at - 2 : at] == "  " and r[at] != " " for r in rows), col
    by_name = {r.split()[0]: r.split() for r in rows}
    assert by_name["tops-noisy"][1:5] == ["clothing", "backbone_head/efficientnet-lite0", "3", "noisy,corrupted:blur"]
    assert by_name["misc"][1:5] == ["-", "timm", "2", "misleading"]
    assert by_name["shoes-a"][-2:] == ["footwear", "no"]  # COVERS from the SDAG; LABELED from --labels
    assert foot == (
        "6 models: clothing 3, digits 1, photos 1, (no domain) 1; "
        "4 tagged weak/redundant/noisy/misleading (weak 1, redundant 1, noisy 1, misleading 1)"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--domain", "clothing"], ["shoes-a", "shoes-weak", "tops-noisy"]),
        (["--source", "backbone_head"], ["tops-noisy", "pets"]),
        (["--source", "timm"], ["shoes-a", "shoes-weak", "digits-a", "misc"]),
        (["--backbone", "efficientnet-lite0"], ["tops-noisy", "pets"]),
        (["--tag", "weak"], ["shoes-weak"]),
        (["--tag", "corrupted"], ["tops-noisy"]),  # the kind of corrupted:blur
        (["--tag", "corrupted:blur"], ["tops-noisy"]),
        (["--tag", "style"], ["pets"]),
        (["--tag", "noisy", "--tag", "derived"], []),  # repeated: every tag must match
        (["--tag", "weak", "--tag", "derived"], ["shoes-weak"]),
        (["--name", "shoes-*"], ["shoes-a", "shoes-weak"]),
        (["--name", "*-a"], ["shoes-a", "digits-a"]),
        (["--domain", "clothing", "--source", "timm"], ["shoes-a", "shoes-weak"]),
        (["--domain", "clothing", "--backbone", "efficientnet-lite0", "--tag", "noisy"], ["tops-noisy"]),
        (["--concept", "dog"], ["pets"]),
        (["--concept", "dogs"], ["pets"]),  # a word in another form, as `mll match` reads it
        (["--concept", "n02084071"], ["pets"]),
        (["--concept", "footwear"], ["shoes-a", "shoes-weak"]),  # a hypernym of sandal, sneaker, boot
        (["--concept", "animal"], ["pets"]),  # above dog and tabby
        (["--concept", "motor_vehicle.n.01"], ["pets", "misc"]),  # above car and jeep
        (["--concept", "jeep"], ["misc"]),
        (["--concept", "digit"], ["digits-a"]),
        (["--concept", "7"], ["digits-a"]),  # a digit as `mll match` reads it
        (["--concept", "car", "--domain", "photos"], ["pets"]),
        (["--tag", "misleading", "--domain", "clothing"], []),  # known values, nothing left: not an error
        (["--tag", "derived", "--name", "tops-*"], []),
    ],
)
def test_filters_combine(run, args, expected):
    assert _names(run, *args) == expected


def test_filtered_footer_counts_what_is_listed_of_the_whole_hub(run):
    rc, out, _ = run("--domain", "clothing")
    assert rc == 0 and [r.split()[0] for r in out[1:-1]] == ["shoes-a", "shoes-weak", "tops-noisy"]
    assert out[-1] == (
        "3 models (of 6 in the hub): clothing 3; 2 tagged weak/redundant/noisy/misleading (weak 1, noisy 1)"
    )
    rc, out, _ = run("--name", "nothing-*")
    assert rc == 0 and out == ["0 models (of 6 in the hub); 0 tagged weak/redundant/noisy/misleading"]


def test_concept_resolves_a_word_and_shows_the_classes_under_it(run):
    rc, out, _ = run("--concept", "footwear")
    assert rc == 0
    assert out[0].startswith("concept 'footwear' -> n03380867 footwear.n.02")
    assert out[1].split() == ["NAME", "DOMAIN", "SOURCE", "CLASSES", "TAGS", "COVERS", "CONCEPT", "LABELED"]
    assert "3: sandal, sneaker, boot" in out[2] and out[2].startswith("shoes-a ")
    assert "2: sandal, boot" in out[3]
    assert out[-1].startswith("2 models (of 6 in the hub): clothing 2; 1 tagged")


def test_json_rows_are_the_table_rows(run):
    rc, out, _ = run("--json")
    rows = json.loads("\n".join(out))
    assert rc == 0 and [r["name"] for r in rows] == ORDER
    pets = next(r for r in rows if r["name"] == "pets")
    assert pets == {
        "name": "pets",
        "domain": "photos",
        "source": "backbone_head",
        "backbone": "efficientnet-lite0",
        "architecture": "linear",
        "classes": 3,
        "tags": ["redundant", "style:photo"],
        "covers": pets["covers"],
        "labeled": False,
    }
    rc, out, _ = run("--json", "--concept", "dog")
    assert json.loads("\n".join(out))[0]["concept_classes"] == ["dog"]


def test_json_to_a_file_keeps_the_table(run, tmp_path):
    rc, out, _ = run("--json", str(tmp_path / "rows.json"), "--tag", "weak")
    assert rc == 0 and out[0].startswith("NAME") and out[1].startswith("shoes-weak")
    assert [r["name"] for r in json.loads((tmp_path / "rows.json").read_text())] == ["shoes-weak"]


def test_group_by_domain_puts_a_header_before_each_domain(run):
    rc, out, _ = run("--group-by", "domain")
    assert rc == 0
    heads = [ln for ln in out if ln.startswith("== ")]
    assert heads == ["== clothing (3) ==", "== digits (1) ==", "== photos (1) ==", "== (no domain) (1) =="]
    assert out.index("== photos (1) ==") + 1 == next(i for i, ln in enumerate(out) if ln.startswith("pets "))


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--domain", "clothes"], ["--domain 'clothes' matches no model (did you mean clothing?)", "clothing 3"]),
        (["--source", "timmm"], ["--source 'timmm'", "did you mean timm", "backbone_head 2, timm 4"]),
        (["--backbone", "efficientnet-lite9"], ["--backbone 'efficientnet-lite9'", "efficientnet-lite0 2"]),
        (["--tag", "wek"], ["--tag 'wek'", "did you mean weak", "corrupted 1"]),
        (["--concept", "dgo"], ["--concept 'dgo' names no SDAG node; did you mean dog", "mll sdag show"]),
        (["--concept", "n99999999"], ["--concept 'n99999999' is no node of the SDAG"]),
    ],
)
def test_unknown_values_are_one_line_errors_naming_what_the_hub_has(run, args, expect):
    rc, out, err = run(*args)
    assert rc == 2 and out == []
    assert err.startswith("mll: error: ") and err.count("\n") == 1 and "Traceback" not in err
    for text in expect:
        assert text in err


def test_concept_without_an_sdag_names_the_fix(hub_dir, tmp_path, capsys):
    assert main(["hub", "list", "--hub", str(hub_dir), "--sdag", str(tmp_path / "none"), "--concept", "dog"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mll sdag build" in err
    assert main(["hub", "list", "--hub", str(hub_dir), "--sdag", str(tmp_path / "none"), "--domain", "digits"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:6] == ["digits-a", "digits", "timm", "2", "-", "-"] and "mll sdag build" in out[-2]


def test_each_card_is_read_once(run, monkeypatch):
    import mll.hub.store

    reads: list[str] = []
    real = mll.hub.store.read_card

    def counting(model_dir):
        reads.append(Path(model_dir).name)
        return real(model_dir)

    monkeypatch.setattr(mll.hub.store, "read_card", counting)
    assert run("--concept", "animal", "--tag", "redundant", "--domain", "photos")[0] == 0
    assert sorted(reads) == sorted(MODELS)


def test_an_invalid_card_is_listed_and_fails_the_command(hub_dir, small_sdag_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "hub"
    shutil.copytree(hub_dir, broken)
    (broken / "misc" / CARD_FILE).write_text("name: misc\n")
    assert main(["hub", "list", "--hub", str(broken), "--sdag", str(small_sdag_dir), "--labels", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("misc: INVALID (") for ln in out)
    assert out[-1].startswith("5 models: clothing 3, digits 1, photos 1; 3 tagged") and out[-1].endswith("; 1 invalid")


def test_help_lists_every_filter(capsys):
    with pytest.raises(SystemExit) as e:
        main(["hub", "list", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and text.startswith("usage: mll hub list")
    for flag in ("--domain", "--source", "--backbone", "--tag", "--concept", "--name", "--json", "--group-by"):
        assert flag in text
    assert "--labels" in text and "--hub" in text and "--sdag" in text
