"""Embedding throughput: decode + resize + forward vs the bare forward pass, per engine.

    .venv/bin/python bench/embedding.py --images 64 --batch 32 --rounds 5
    .venv/bin/python bench/embedding.py --choose-arch     # which timm variant/normalisation
    .venv/bin/python bench/embedding.py --versus lite0    # the domain's backbone vs another

Prints images/s of the bare forward pass on pre-made tensors for each engine (eager PyTorch,
TorchScript optimize_for_inference, ONNX Runtime), then the full pipeline (`embed_images`: file
read, JPEG decode with draft, resize/crop, forward through the fastest engine, cache write) on
the same images and batch size, and the ratio pipeline / bare-fastest. Bare and pipeline passes
alternate for `--rounds` rounds and the medians are reported, so a noisy neighbour on the
machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.data import photo_classes, refs_for
from training.ml.backbones import BACKBONE_FOR_DOMAIN, build_feature_extractor, get_backbone
from training.ml.features import FeatureCache, embed_images, stock_engine
from training.ml.inference import build_engine

DATA = Path(os.environ.get("LOUPE_BENCH_DATA", Path(tempfile.gettempdir()) / "loupe-bench"))


def bare_rate(engine, batches: list[np.ndarray]) -> tuple[float, float]:
    """(images/s wall clock, images per CPU-second of this process)."""
    engine(batches[0])  # warm-up: first-call allocations are not throughput
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        engine(batch)
    count = sum(len(b) for b in batches)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def pipeline_rate(refs, backbone: str, batch: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), time.process_time()
        embed_images(refs, backbone=backbone, cache=FeatureCache(folder), batch_size=batch)
        return len(refs) / (time.perf_counter() - wall), len(refs) / (time.process_time() - cpu)


def _fmt(values: list[float], digits: int = 1) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


def throughput(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    spec = get_backbone(args.backbone)
    items = photo_classes(DATA, images=args.images, classes=10)
    refs = refs_for(items)
    rng = np.random.default_rng(0)
    # Pre-made uint8 pixels: the engines normalise inside their graph (see inference.py).
    tensor = rng.integers(
        0, 256, size=(args.batch, spec.input_size, spec.input_size, 3), dtype=np.uint8
    )
    batches = [tensor] * max(1, args.images // args.batch)

    slow = {
        "eager": build_engine(build_feature_extractor(args.backbone), spec, "eager"),
        "torchscript": build_engine(build_feature_extractor(args.backbone), spec, "torchscript"),
    }
    fast = stock_engine(args.backbone)  # ONNX Runtime: the engine embed_images uses
    reference = slow["eager"](tensor[:4])
    for name, engine in [*slow.items(), ("onnxruntime", fast)]:
        diff = float(np.abs(engine(tensor[:4]) - reference).max())
        print(f"{name:12s} max |diff| vs eager = {diff:.2e}")
    # Eager and TorchScript once (they are slow and only give context), each next to an ORT pass.
    context = {}
    for name, engine in slow.items():
        context[name] = bare_rate(engine, batches[:2])
        context[f"onnxruntime (next to {name})"] = bare_rate(fast, batches[:2])
    bare: list[tuple[float, float]] = []
    pipe: list[tuple[float, float]] = []
    for _ in range(args.rounds):  # alternate so load changes hit both alike
        bare.append(bare_rate(fast, batches))
        pipe.append(pipeline_rate(refs, args.backbone, args.batch))
    print(
        f"\nbackbone {args.backbone} ({spec.input_size}px), batch {args.batch}, {args.images} "
        f"JPEG 640x480 per round, torch/ORT threads {args.threads}, {args.rounds} rounds"
    )
    print("| mode | images/s wall | images per CPU-s |\n|---|---|---|")
    for name, (wall, cpu) in context.items():
        print(f"| bare forward, {name} | {wall:.1f} | {cpu:.1f} |")
    print(
        f"| bare forward, onnxruntime (rounds) | {_fmt([b[0] for b in bare])} | "
        f"{_fmt([b[1] for b in bare])} |"
    )
    print(
        f"| pipeline decode+resize+forward, onnxruntime (rounds) | {_fmt([p[0] for p in pipe])} | "
        f"{_fmt([p[1] for p in pipe])} |"
    )
    wall_ratio = [p[0] / b[0] for p, b in zip(pipe, bare, strict=True)]
    cpu_ratio = [p[1] / b[1] for p, b in zip(pipe, bare, strict=True)]
    print(
        f"\npipeline / bare (wall clock): median {statistics.median(wall_ratio):.3f} "
        f"[{_fmt(wall_ratio, 3)}]; goal >= 0.85"
    )
    print(
        f"pipeline / bare (CPU time):   median {statistics.median(cpu_ratio):.3f} "
        f"[{_fmt(cpu_ratio, 3)}]"
    )
    print(f"load average at the end: {os.getloadavg()}")


def choose_arch(args: argparse.Namespace) -> None:
    """Top-1 (within each photo's ImageNet class set) over random crops, per variant/norm."""
    import random

    import skimage.data
    import timm
    from PIL import Image

    from training.ml.backbones import _load_by_position, _packaged_state_dict

    torch.set_num_threads(args.threads)
    photos = {
        "chelsea": (skimage.data.chelsea(), {281, 282, 283, 284, 285}),
        "coffee": (skimage.data.coffee(), {967, 968, 504}),
        "rocket": (skimage.data.rocket(), {657, 744, 812}),
        "camera": (skimage.data.camera(), {872, 759, 732}),
        "clock": (skimage.data.clock(), {409, 892}),
    }
    norms = {
        "mean=std=0.5": ((0.5,) * 3, (0.5,) * 3),
        "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    }
    print(
        "| weights | timm model | normalisation | top-1 in class set | mean NLL |\n"
        "|---|---|---|---|---|"
    )
    for variant, size in ((0, 224), (2, 260)):
        rng = random.Random(0)
        crops = {}
        for key, (array, _) in photos.items():
            image = Image.fromarray(array).convert("RGB")
            width, height = image.size
            views = []
            for index in range(args.crops):
                side = int(min(width, height) * rng.uniform(0.6, 1.0))
                left, top = rng.randint(0, width - side), rng.randint(0, height - side)
                view = image.crop((left, top, left + side, top + side)).resize(
                    (size, size), Image.BICUBIC
                )
                if index % 2:
                    view = view.transpose(Image.FLIP_LEFT_RIGHT)
                views.append(
                    torch.from_numpy(np.asarray(view).copy()).permute(2, 0, 1).float() / 255
                )
            crops[key] = torch.stack(views)
        for arch in (f"tf_efficientnet_lite{variant}", f"efficientnet_lite{variant}"):
            model = timm.create_model(arch, pretrained=False).eval()
            _load_by_position(model, _packaged_state_dict(variant))
            for norm_name, (mean, std) in norms.items():
                hits, nll = [], []
                for key, (_, classes) in photos.items():
                    x = (crops[key] - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
                        :, None, None
                    ]
                    with torch.inference_mode():
                        probs = model(x).softmax(dim=1)
                    wanted = sorted(classes)
                    hits += [int(int(p.argmax()) in classes) for p in probs]
                    nll += (-probs[:, wanted].sum(dim=1).clamp_min(1e-9).log()).tolist()
                print(
                    f"| lite{variant} | {arch} | {norm_name} | {np.mean(hits):.3f} | "
                    f"{np.mean(nll):.3f} |"
                )


def versus(args: argparse.Namespace) -> None:
    """The stock ONNX Runtime engines of `--backbone` and `--versus` on the same pre-made batches,
    alternating round by round: images per CPU-second of each and their ratio."""
    torch.set_num_threads(args.threads)
    names = [args.backbone, args.versus]
    sizes = {get_backbone(name).input_size for name in names}
    if len(sizes) != 1:
        raise SystemExit("--versus needs two backbones of the same input size.")
    size = sizes.pop()
    rng = np.random.default_rng(0)
    batches = [
        rng.integers(0, 256, size=(args.batch, size, size, 3), dtype=np.uint8)
        for _ in range(max(1, args.images // args.batch))
    ]
    engines = {name: stock_engine(name, threads=args.threads) for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            rates[name].append(bare_rate(engines[name], batches)[1])
    print(f"| backbone | images per CPU-s ({args.rounds} rounds) | median |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {_fmt(rates[name])} | {statistics.median(rates[name]):.1f} |")
    ratio = statistics.median(rates[args.versus]) / statistics.median(rates[args.backbone])
    print(f"\ncost of {args.backbone} / {args.versus} per image (CPU): {ratio:.3f}")
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backbone", default=BACKBONE_FOR_DOMAIN["general_compact"])
    parser.add_argument("--versus", default="", help="time this backbone against --backbone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--crops", type=int, default=12)
    parser.add_argument("--choose-arch", action="store_true")
    args = parser.parse_args()
    if args.choose_arch:
        choose_arch(args)
    elif args.versus:
        versus(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
