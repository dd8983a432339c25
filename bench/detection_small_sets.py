"""Quick detection training on small labeled sets: the FCOS regression's start, side by side.

torchvision's FCOS head passes its box distances through a ReLU from zero-centred initial
weights; on 10-30 labeled images some draws of them trained a detector whose boxes were all a
fraction of their objects' size (held-out mAP@0.5 near 0; one seed of the detection Most gain
bench). Loupe starts the distances at `training.ml.detection.model.REGRESSION_START`. This
bench trains the same images, seeds and options with torchvision's start (0) and Loupe's, in
one process one after the other (training is deterministic at one thread), and prints mAP@0.5
on each seed's test images by pycocotools, the paired difference, and how many runs collapsed
(mAP@0.5 below 5%).

Data and protocol: the detection Most gain bench's (bench/active_learning.py --dataset
detection): 200 generated images (object cut-outs on photographs, 5 tags), per seed 40 test
images, and the first N of a seeded draw of the rest as the labeled set; its training options
(30% held out, one cached view an image, a fixed number of epochs).

    .venv/bin/python bench/detection_small_sets.py --seeds 10 --sizes 10,20,30
    options: --epochs N (default 10)  --no-write (RESULTS.md)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.active_learning import (  # noqa: E402
    BACKBONE,
    DetectionSet,
    detect_all,
    detection_map50,
)
from bench.common import append_result, command_line  # noqa: E402
from bench.detection_data import TAGS  # noqa: E402
from training.ml.detection import (  # noqa: E402
    DetectorConfig,
    DetectorPredictor,
    TrainOptions,
    train_detector,
)
from training.ml.detection import model as detector_model  # noqa: E402
from training.ml.detection.prepare import MapStore  # noqa: E402

COLLAPSED = 0.05
LOUPE_START = detector_model.REGRESSION_START
STARTS = {"torchvision (0)": 0.0, f"Loupe ({LOUPE_START:g})": LOUPE_START}


def draws(data: DetectionSet, seed: int, sizes: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The seed's test rows and, per size, its labeled rows (each size's set holds the smaller)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.paths))
    test = np.sort(order[:40])
    pool = order[40:]
    # Training holds some images out and needs boxes on several: labeled images have boxes.
    with_boxes = np.array([r for r in pool if data.boxes[int(r)]])
    picked = rng.permutation(with_boxes)
    return test, [np.sort(picked[:size]) for size in sizes]


def train_and_score(
    data: DetectionSet, rows: np.ndarray, test: np.ndarray, seed: int, epochs: int, store: MapStore
) -> float:
    result = train_detector(
        [data.ref(r) for r in rows],
        [data.boxes[int(r)] for r in rows],
        num_tags=len(TAGS),
        backbone=BACKBONE,
        budget_s=900.0,
        seed=seed,
        map_store=store,
        options=TrainOptions(holdout_fraction=0.3, cached_views=1, max_epochs=epochs),
    )
    predictor = DetectorPredictor(result.to_artifact(backbone=BACKBONE, num_tags=len(TAGS)))
    found, _ = detect_all(predictor, data, test)
    return detection_map50(data, test, found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="10,20,30", help="labeled images, comma-separated")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = DetectionSet(200)
    print(f"{len(data.paths)} images decoded and embedded ({time.perf_counter() - started:.0f} s)")
    scores = {name: np.zeros((args.seeds, len(sizes))) for name in STARTS}
    with tempfile.TemporaryDirectory(prefix="loupe-det-small-") as tmp:
        store = MapStore(Path(tmp), backbone=BACKBONE, config=DetectorConfig(), max_bytes=2**31)
        for seed in range(args.seeds):
            test, labeled = draws(data, seed, sizes)
            for name, start in STARTS.items():
                detector_model.REGRESSION_START = start
                for column, rows in enumerate(labeled):
                    scores[name][seed, column] = train_and_score(
                        data, rows, test, seed, args.epochs, store
                    )
                line = " ".join(f"{100 * v:.1f}" for v in scores[name][seed])
                print(f"seed {seed} {name}: {line}", flush=True)
    detector_model.REGRESSION_START = LOUPE_START
    text = markdown(scores, sizes, args)
    print(text)
    if not args.no_write:
        append_result("Issue 15: training that keeps up with real datasets", text)


def markdown(scores: dict[str, np.ndarray], sizes: list[int], args: argparse.Namespace) -> str:
    old, new = (scores[name] for name in STARTS)
    diff = new - old
    n = diff.shape[0]
    lines = [
        "### Quick detection training on small labeled sets: the regression's start",
        "",
        f"Command: `{command_line()}`",
        "",
        f"{n} seeds, {args.epochs} epochs a training, test mAP@0.5 (%) on 40 images a seed "
        f"(mean ± std; a run collapsed: below {100 * COLLAPSED:.0f}%).",
        "",
        "| labeled images | " + " | ".join(str(s) for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for name, values in scores.items():
        cells = [
            f"{100 * values[:, c].mean():.1f} ± {100 * values[:, c].std():.1f}"
            f" ({int((values[:, c] < COLLAPSED).sum())} collapsed)"
            for c in range(len(sizes))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [
        f"{100 * diff[:, c].mean():+.1f} ± {100 * diff[:, c].std() / np.sqrt(n):.1f}"
        f" ({int((diff[:, c] > 0).sum())} / {int((diff[:, c] < 0).sum())})"
        for c in range(len(sizes))
    ]
    lines.append(
        "| Loupe - torchvision, paired (± s.e.; seeds ahead / behind) | " + " | ".join(cells) + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
