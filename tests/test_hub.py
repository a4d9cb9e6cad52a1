"""Model cards, safe loading, every source kind, the registry and its CLI."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mll.cli import main
from mll.hub import sources
from mll.hub.cards import CardError, ExpertCard, HeadClass, InputConfig, card_from_dict, read_card, write_card
from mll.hub.experts import load_expert, preprocess
from mll.hub.sources import AmbiguousClassError, import_efficientnet_lite, import_file, map_class_names
from mll.hub.store import Hub
from mll.hub.weights import UnsafeWeightsError, load_state_dict

TINY = InputConfig(size=16, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def tiny_state(n_classes: int = 3, arch: str = "test_resnet") -> dict:
    import timm

    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=n_classes).state_dict()


def tiny_card(name="tiny", n=3) -> ExpertCard:
    head = (HeadClass("dog", "n02084071"), HeadClass("cat", "n02121808"), HeadClass("car", "n02958343"))[:n]
    return ExpertCard(
        name=name, source="timm", architecture="test_resnet", weights="", weights_sha256="", input=TINY, head=head
    )


@pytest.fixture
def hub(tmp_path) -> Hub:
    h = Hub(tmp_path / "hub")
    h.add(tiny_card(), tiny_state())
    return h


def test_registry_round_trip(hub):
    assert hub.names() == ["tiny"]
    card = hub.card("tiny")
    assert card.num_classes == 3 and card.synsets[0] == "n02084071" and len(card.weights_sha256) == 64
    y = hub.load("tiny", device="cpu").logits([Image.new("RGB", (40, 30)), Image.new("L", (8, 8))])
    assert y.shape == (2, 3) and y.dtype == torch.float32
    with pytest.raises(KeyError, match="did you mean tiny"):
        hub.card("tinny")
    with pytest.raises(ValueError, match="already exists"):
        hub.add(tiny_card(), tiny_state())
    hub.remove("tiny")
    assert hub.names() == []


def test_card_yaml_is_readable_and_validated(hub, tmp_path):
    raw = yaml.safe_load((hub.root / "tiny" / "card.yaml").read_text())
    assert raw["head"][0] == ["dog", "n02084071"] and raw["input"]["size"] == 16
    for mutate, msg in [
        (lambda d: d.pop("head"), "missing field"),
        (lambda d: d.update(colour="red"), "unknown field"),
        (lambda d: d.update(source="onnx"), "source 'onnx'"),
        (lambda d: d["head"].__setitem__(0, ["dog", "dog"]), "expected an id like n02084071"),
        (lambda d: d.update(weights="../../etc/passwd"), "plain file name"),
        (lambda d: d.update(name="bad name!"), "name"),
        (lambda d: d["input"].update(channels=2), "channels 1 or 3"),
    ]:
        d = yaml.safe_load((hub.root / "tiny" / "card.yaml").read_text())
        mutate(d)
        with pytest.raises(CardError, match=msg):
            card_from_dict(d, "card.yaml")
    other = tmp_path / "other"
    write_card(hub.card("tiny"), other)
    with pytest.raises(CardError, match="differs from its folder name"):
        read_card(other)


def test_card_that_does_not_match_its_weights_is_refused(hub):
    folder = hub.root / "tiny"
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit pattern in the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(CardError, match=r"weights\.safetensors: sha256 .* does not match"):
        load_expert(folder)
    weights.unlink()
    with pytest.raises(CardError, match="weights file missing"):
        load_expert(folder)


def test_head_size_mismatch_is_refused(tmp_path):
    h = Hub(tmp_path)
    with pytest.raises(CardError, match="4-class head but card tiny lists 3 classes"):
        h.add(tiny_card(), tiny_state(n_classes=4))
    assert h.names() == []  # nothing left behind


def test_symlinked_weights_outside_the_folder_are_refused(hub, tmp_path):
    folder = hub.root / "tiny"
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "weights.safetensors").rename(outside)
    (folder / "weights.safetensors").symlink_to(outside)
    with pytest.raises(CardError, match="outside the model folder"):
        load_expert(folder)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"fc.weight": _Payload(marker)}, fh)
    with pytest.raises(UnsafeWeightsError, match="refused"):
        load_state_dict(evil)
    with pytest.raises(UnsafeWeightsError):
        import_file(Hub(tmp_path / "hub"), "evil", evil, ["dog", "car"], arch="test_resnet")
    assert not marker.exists()
    # the same payload inside torch's zip format
    evil2 = tmp_path / "evil2.pt"
    torch.save({"w": _Payload(marker)}, evil2)
    with pytest.raises(UnsafeWeightsError):
        load_state_dict(evil2)
    assert not marker.exists()
    assert Hub(tmp_path / "hub").names() == []


def test_truncated_weights_are_a_clear_error(tmp_path):
    good = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(100)}, str(good))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CardError, match=r"bad\.safetensors: unreadable"):
        load_state_dict(bad)


def test_user_upload_pth_and_torchscript(tmp_path):
    h = Hub(tmp_path / "hub")
    pth = tmp_path / "model.pth"
    torch.save(tiny_state(2), pth)
    card = import_file(h, "upload", pth, ["dog", "gym_shoe.n.01"], arch="test_resnet", input_cfg=TINY)
    assert card.synsets == ["n02084071", "n03472535"] and (h.root / "upload" / "weights.safetensors").is_file()
    import timm

    net = timm.create_model("test_resnet", num_classes=2).eval()
    ts = tmp_path / "model.ts"
    torch.jit.trace(net, torch.zeros(1, 3, 16, 16)).save(str(ts))
    card = import_file(h, "scripted", ts, ["dog", "zebra"], torchscript=True, input_cfg=TINY)
    e = h.load("scripted", device="cpu")
    assert e.logits([Image.new("RGB", (16, 16))] * 3).shape == (3, 2)
    with pytest.raises(CardError, match="model outputs shape"):
        import_file(h, "scripted3", ts, ["dog", "zebra", "cat.n.01"], torchscript=True, input_cfg=TINY)


def test_class_name_mapping_asks_for_help_when_ambiguous():
    got = map_class_names(["dog", "zebra", "n04120489", "gym_shoe.n.01"])
    assert [h.synset for h in got] == ["n02084071", "n02391049", "n04120489", "n03472535"]
    with pytest.raises(AmbiguousClassError) as e:
        map_class_names(["crane", "qwertyzzz", "mouse"])  # mouse: WordNet's tagged frequency decides
    msg = str(e.value)
    assert "--map name=synset" in msg and "crane=crane.n.05" in msg and "qwertyzzz" in msg and "mouse" not in msg
    got = map_class_names(["crane", "mouse"], {"crane": "crane.n.05", "mouse": "mouse.n.04"})
    assert [g.synset for g in got] == ["n02012849", "n03793489"]  # the bird, the computer mouse
    with pytest.raises(ValueError, match="not in the head"):
        map_class_names(["dog"], {"cat": "cat.n.01"})


def test_packaged_efficientnet_lite0_sees_cat_and_espresso(tmp_path):
    from skimage import data

    card = import_efficientnet_lite(Hub(tmp_path), "efficientnet-lite0")
    assert card.num_classes == 1000 and card.synsets[0] == "n01440764"  # tench, timm's order
    e = Hub(tmp_path).load(card.name, device="cpu")
    y = e.logits([Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())])
    names = [card.head[i].name for i in y.argmax(1)]
    assert names[0] in ("tabby", "tiger cat", "Egyptian cat")
    assert names[1] == "espresso"


@pytest.mark.slow
def test_timm_pretrained_id_from_a_local_cache(tmp_path):
    """`mll hub add timm:<id>` resolves weights through the Hugging Face cache (no download)."""
    import timm
    from safetensors.torch import save_file

    model_id = "test_resnet.r160_in1k"
    cache = tmp_path / "hf"
    snap = cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (cache / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("0" * 40)
    torch.manual_seed(1)
    ref = timm.create_model("test_resnet", num_classes=1000)
    save_file(ref.state_dict(), str(snap / "model.safetensors"))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    hub = tmp_path / "hub"
    r = subprocess.run(
        [sys.executable, "-m", "mll.cli", "hub", "add", f"timm:{model_id}", "--hub", str(hub)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    card = Hub(hub).card("test_resnet.r160_in1k")
    assert card.num_classes == 1000 and card.input.size == 160 and card.synsets[0] == "n01440764"
    sd = load_state_dict(hub / card.name / "weights.safetensors")
    assert torch.equal(sd["fc.weight"], ref.state_dict()["fc.weight"])
    # with no cache entry the error says what to do, in one line
    r = subprocess.run(
        [sys.executable, "-m", "mll", "hub", "add", "timm:test_vit.r160_in1k", "--hub", str(hub)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "--weights FILE" in r.stderr and r.stderr.count("\n") == 1


def test_preprocess_follows_the_card():
    cfg = InputConfig(size=8, channels=1, mean=(0.5,), std=(0.25,), crop_pct=0.5)
    im = Image.fromarray(np.full((10, 20), 255, np.uint8))
    x = preprocess([im], cfg)
    assert x.shape == (1, 1, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0))


def test_preprocess_matches_the_reference_pipeline_bit_for_bit():
    """Grayscale images resized as one channel, pixels normalised by torch per chunk: exactly the
    reference (convert to RGB, resize, crop, float32 numpy normalisation), across chunk borders."""
    rng = np.random.default_rng(0)
    cfg = InputConfig(
        size=24,
        channels=3,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_pct=0.875,
        interpolation="bicubic",
    )
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(5)]
    images += [Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)) for _ in range(4)]
    images.append(Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA"))
    ref = []
    for im in images:
        im = im.convert("RGB").resize((27, 27) if im.size[0] == im.size[1] else (37, 27), Image.BICUBIC)
        left = (im.size[0] - 24) // 2
        a = np.asarray(im.crop((left, 1, left + 24, 25)), dtype=np.float32) * np.float32(1 / 255)
        ref.append(torch.from_numpy((a - np.float32(cfg.mean)) / np.float32(cfg.std)).permute(2, 0, 1))
    assert torch.equal(preprocess(images, cfg, chunk=3), torch.stack(ref))


def test_cli_hub_commands(hub, capsys, tmp_path):
    assert main(["hub", "list", "--hub", str(hub.root), "--sdag", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "1 models" in out
    (tmp_path / "labels" / "tiny").mkdir(parents=True)
    (tmp_path / "labels" / "tiny" / "summary.json").write_text("{}")
    assert (
        main(
            [
                "hub",
                "list",
                "--hub",
                str(hub.root),
                "--sdag",
                str(tmp_path / "none"),
                "--labels",
                str(tmp_path / "labels"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[1].endswith("  yes")  # LABELED, read from --labels
    assert main(["hub", "show", "tiny", "--hub", str(hub.root)]) == 0
    assert "n02084071" in capsys.readouterr().out
    pth = tmp_path / "m.pth"
    torch.save(tiny_state(2), pth)
    assert (
        main(
            [
                "hub",
                "add",
                str(pth),
                "--name",
                "two",
                "--arch",
                "test_resnet",
                "--classes",
                "crane,cat",
                "--hub",
                str(hub.root),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("mll: error: map these classes") and err.count("\n") == 1
    assert (
        main(
            [
                "hub",
                "add",
                str(pth),
                "--name",
                "two",
                "--arch",
                "test_resnet",
                "--classes",
                "crane,cat",
                "--map",
                "crane=crane.n.05",
                "--input-size",
                "16",
                "--hub",
                str(hub.root),
            ]
        )
        == 0
    )
    assert main(["hub", "remove", "two", "--hub", str(hub.root)]) == 0
    assert main(["hub", "remove", "two", "--hub", str(hub.root)]) == 2


def test_hub_add_of_an_unknown_source_names_the_fix(tmp_path, capsys):
    for source in ("efficientnet-lite9", str(tmp_path / "missing.pth")):
        assert main(["hub", "add", source, "--name", "x", "--arch", "test_resnet", "--hub", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mll: error: {source}: no such weights file") and err.count("\n") == 1
        assert "--arch" in err and "--torchscript" in err and "timm:<id>" in err and "efficientnet-lite0" in err


def test_a_registered_source_kind_is_added_loaded_and_run(tmp_path, capsys):
    """A new source kind is one `register` call: its card `source`, its builder, its `mll hub add` importer."""
    import timm
    from safetensors.torch import save_file

    def build(card, weights):
        net = timm.create_model("test_resnet", pretrained=False, num_classes=card.num_classes)
        return sources.fit_state_dict(net, sources.load_state_dict(weights), card, weights, "fc")

    def add(hub, source, opts):
        return sources.import_file(
            hub,
            opts.name,
            Path(source.removeprefix("resnetfile:")),
            opts.class_names(),
            source="resnetfile",
            input_cfg=opts.input_config(),
            overwrite=opts.overwrite,
        )

    weights = tmp_path / "net.safetensors"
    save_file(tiny_state(2), str(weights))
    hub = Hub(tmp_path / "hub")
    cmd = [
        "hub",
        "add",
        f"resnetfile:{weights}",
        "--name",
        "mine",
        "--classes",
        "dog,zebra",
        "--input-size",
        "16",
        "--hub",
        str(hub.root),
    ]
    assert main(cmd) == 2 and "no such weights file" in capsys.readouterr().err  # not registered yet
    sources.register(
        sources.SourceKind(
            "resnetfile", build, accepts=lambda s: s.startswith("resnetfile:"), add=add, hint="resnetfile:<file>"
        )
    )
    try:
        with pytest.raises(ValueError, match="already registered"):
            sources.register(sources.SourceKind("resnetfile", build))
        assert main(cmd) == 0
        assert "added mine: 2 classes, resnetfile (resnetfile)" in capsys.readouterr().out
        card = hub.card("mine")
        assert card.source == "resnetfile" and card.synsets == ["n02084071", "n02391049"]
        expert = hub.load("mine", device="cpu")
        x = torch.randn(2, 3, 16, 16)
        ref = timm.create_model("test_resnet", num_classes=2).eval()
        ref.load_state_dict(tiny_state(2))
        with torch.no_grad():
            assert torch.allclose(expert.forward(x), ref(x), atol=1e-5)
        assert expert.logits([Image.new("RGB", (20, 20))]).shape == (1, 2)
        # the library function behind `mll hub add`, with the same dispatch
        again = sources.add_from_source(
            hub, f"resnetfile:{weights}", name="mine", classes=["dog", "zebra"], input_size=16, overwrite=True
        )
        assert again.weights_sha256 == card.weights_sha256
    finally:
        sources.unregister("resnetfile")
    assert "resnetfile" not in sources.source_kinds()
    with pytest.raises(CardError, match="source 'resnetfile' is not one of timm, efficientnet_lite, torchscript"):
        hub.card("mine")
