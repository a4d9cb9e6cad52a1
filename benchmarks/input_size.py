"""The input size each backbone runs at: accuracy and throughput against input size (on request:
`python -m benchmarks input_size`, a few minutes on 2 cores).

Two measurements, both on this project's own data:
- ImageNet classifiers on the Tux Paint photos (node data and test images): the share of photos
  whose top-1 ImageNet class lies at or below the photo's synset, per variant and input size;
- a linear probe (the `heads` stage's trainer) on Fashion-MNIST and MNIST features, 200 training
  images a class, validation accuracy per input size.
Throughput is images per second of the backbone alone on this machine, which varies with load.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

PHOTO_SIZES = (96, 128, 160, 192, 224)
HEAD_SIZES = (32, 48, 64, 96)


def photos(variants: tuple[str, ...] = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")) -> list:
    from mll.data.images import open_image
    from mll.data.sdag import SDAG
    from mll.hub.backbones import lite_classifier, load_backbone
    from mll.hub.cards import InputConfig
    from mll.hub.experts import preprocess
    from mll.hub.heads import imagenet_head

    sdag = SDAG.load("data/sdag")
    rows = pd.concat([pd.read_parquet(f"data/splits/{s}.parquet") for s in ("probe", "target_test")])
    rows = rows[rows["dataset"] == "tuxpaint"]
    images = [open_image(u) for u in rows["uri"]]
    below = [sdag.ancestors(h) | {h} if h in sdag else {h} for h in (c.synset for c in imagenet_head())]
    out = []
    for v in variants:
        net, fc = load_backbone(v), lite_classifier(v)
        for size in PHOTO_SIZES:
            cfg = InputConfig(size=size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=0.875)
            x = preprocess(images, cfg)
            t = time.perf_counter()
            with torch.inference_mode():
                f = net(x)
            rate = len(x) / (time.perf_counter() - t)
            top = (f @ fc["weight"].T + fc["bias"]).argmax(1).numpy()
            hit = float(np.mean([s in below[k] for s, k in zip(rows["synset"], top)]))
            out.append((v, size, hit, rate))
            line = f"  photos  {v:20s} {size:4d} px  top-1 under the photo's synset {hit:.3f}  {rate:6.1f} img/s"
            print(line, flush=True)
    return out


def heads(variants: tuple[str, ...] = ("efficientnet-lite0",)) -> list:
    from mll.hub.backbones import FeatureCache
    from mll.hub.head_training import HeadSpec, fit_head, select_rows, training_features

    rows = pd.read_parquet("data/splits/expert_train.parquet")
    out = []
    for ds in ("fashion_mnist", "mnist"):
        for v in variants:
            for size in HEAD_SIZES:
                spec = HeadSpec(name=f"size-{ds}", datasets=(ds,), backbone=v, input_size=size, per_class=200)
                r, head = select_rows(spec, rows)
                t = time.perf_counter()
                f, g = training_features(spec, r, FeatureCache())
                rate = len(f) / (time.perf_counter() - t)
                _, m = fit_head(spec, f, r["target"].to_numpy()[g], g, len(head))
                out.append((ds, v, size, m["val_accuracy"], rate))
                print(
                    f"  probe   {ds:14s} {v:20s} {size:4d} px  val accuracy {m['val_accuracy']:.3f}  "
                    f"{rate:6.1f} img/s (incl. decoding)",
                    flush=True,
                )
    return out


def run() -> dict:
    return {"photos": photos(), "heads": heads()}
