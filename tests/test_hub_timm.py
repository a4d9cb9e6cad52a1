"""timm experts' preprocessing comes from timm's data config; `preprocess` against timm's own
eval transform (`timm.data.create_transform`) on real photographs."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from mll.cli import main
from mll.hub.cards import InputConfig
from mll.hub.experts import preprocess
from mll.hub.sources import input_config_from_timm, timm_arch_input_config
from mll.hub.store import Hub
from test_hub import tiny_state

# pretrained configs (metadata only, no weights): three crop/interpolation/normalisation mixes
ARCHS = ("test_resnet.r160_in1k", "resnet50.a1_in1k", "efficientnet_b0.ra_in1k")


def _data_config(arch: str) -> dict:
    import timm
    from timm.data import resolve_data_config

    return resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(arch).to_dict())


def test_an_uploaded_timm_arch_gets_timms_data_config(tmp_path):
    pth = tmp_path / "m.pth"
    torch.save(tiny_state(2), pth)
    hub = tmp_path / "hub"
    args = ["hub", "add", str(pth), "--arch", "test_resnet", "--classes", "dog,cat", "--hub", str(hub)]
    assert main([*args, "--name", "plain"]) == 0
    want = input_config_from_timm(_data_config("test_resnet.r160_in1k"))
    assert Hub(hub).card("plain").input == want == timm_arch_input_config("test_resnet")
    assert want == InputConfig(size=160, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear", crop_pct=0.95)
    # an option given wins; the rest still comes from timm
    assert main([*args, "--name", "small", "--input-size", "16", "--interpolation", "bicubic"]) == 0
    small = Hub(hub).card("small").input
    assert (small.size, small.interpolation, small.crop_pct, small.mean) == (16, "bicubic", 0.95, (0.5,) * 3)


def _same_geometry(size: tuple[int, int], cfg: InputConfig) -> bool:
    """Do `preprocess` and timm's eval transform resize to the same pixels and crop the same box?
    timm: shorter side to floor(size / crop_pct), long side truncated (torchvision's Resize), crop
    offset round((n - size) / 2); `preprocess`: round, round, floor((n - size) / 2)."""
    w, h = size
    ours_short, tv_short = round(cfg.size / cfg.crop_pct), math.floor(cfg.size / cfg.crop_pct)
    ours = [max(cfg.size, round(x * ours_short / min(w, h))) for x in (w, h)]
    tv = [tv_short if x == min(w, h) else int(tv_short * x / min(w, h)) for x in (w, h)]
    return ours == tv and all((n - cfg.size) // 2 == round((n - cfg.size) / 2.0) for n in ours)


@pytest.mark.parametrize("arch", ARCHS)
def test_preprocess_matches_timms_eval_transform_where_the_geometry_agrees(arch):
    """Where both resize to the same pixels, the tensors agree to float32 rounding (|d| <= 1e-6:
    timm divides by 255 where `preprocess` multiplies by 1/255). Where the rounding rules give a
    resize one pixel apart, the sampling grid shifts: the mean difference stays a few grey levels
    (measured at most 8.1 of 255 on these images), and labels and the benchmark keep `preprocess`."""
    from skimage import data
    from timm.data import create_transform

    dc = _data_config(arch)
    cfg = input_config_from_timm(dc)
    timm_eval = create_transform(**dc)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    agreed = 0
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):  # camera is greyscale
        im = Image.fromarray(getattr(data, name)())
        ref = timm_eval(im.convert("RGB"))
        ours = preprocess([im], cfg)[0]
        if _same_geometry(im.size, cfg):
            agreed += 1
            assert torch.allclose(ours, ref, rtol=0, atol=1e-6), name
        else:
            grey_levels = ((ours - ref).abs() * std * 255).mean().item()
            assert 0 < grey_levels < 10, (name, grey_levels)
    # the three 4:3 / square photos agree for the configs whose size / crop_pct rounds down anyway
    assert agreed == {"test_resnet.r160_in1k": 3, "resnet50.a1_in1k": 0, "efficientnet_b0.ra_in1k": 3}[arch]
