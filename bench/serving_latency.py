"""One prediction's model time: the serving file (ONNX Runtime, no torch) vs the torch model.

    .venv/bin/python bench/serving_latency.py [--repeats 30] [--no-record]

Builds bench.prediction_api's classifier (EfficientNet-Lite0 at 224 px, quick-trained head)
and a fine-tuned variant (its own backbone weights: one graph with both outputs), then times
`run` of training.ml.torch_model.LoadedModel (what the web process ran before) and of
training.ml.serving.ServingModel on the same decoded 640x480 photograph, one thread each as
the prediction API runs them, alternating so both see the same machine load. Prints medians
and their ratio (below 1: the serving model is faster).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import append_result, command_line, machine_line  # noqa: E402
from bench.prediction_api import build_artifact, photo_jpeg  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    from training.ml.artifact import load_artifact, save_artifact
    from training.ml.backbones import build_feature_extractor
    from training.ml.decode import load_rgb
    from training.ml.serving import ServingModel
    from training.ml.serving_build import build_serving, build_stock_graph
    from training.ml.torch_model import LoadedModel

    quick = build_artifact()
    tuned = load_artifact(io.BytesIO(quick))
    state = build_feature_extractor(tuned.backbone).state_dict()
    state["conv_stem.weight"] = state["conv_stem.weight"] * 1.05
    tuned.backbone_state = state
    buffer = io.BytesIO()
    save_artifact(tuned, buffer)
    image = load_rgb(photo_jpeg(), draft_size=224)
    lines = []
    for label, payload in (("quick", quick), ("fine-tuned", buffer.getvalue())):
        serving, stock = build_serving(load_artifact(io.BytesIO(payload)))
        shared = {stock: build_stock_graph("lite0")} if stock else {}
        models = {
            "torch": LoadedModel(payload, threads=1),
            "serving": ServingModel(serving, read=shared.__getitem__, threads=1),
        }
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(3):  # warm-up
            for model in models.values():
                model.run(image)
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model.run(image)
                times[name].append(time.perf_counter() - start)
        torch_ms = statistics.median(times["torch"]) * 1000
        serving_ms = statistics.median(times["serving"]) * 1000
        line = (
            f"{label}: torch model {torch_ms:.1f} ms, serving file {serving_ms:.1f} ms "
            f"(x{serving_ms / torch_ms:.2f}), median of {args.repeats}"
        )
        print(line, flush=True)
        lines.append(f"- {line}")
    if not args.no_record:
        append_result(
            "Issue 16: reliability and security",
            "### One prediction's model time, serving file vs torch (bench/serving_latency.py)\n\n"
            f"`{command_line()}` on {machine_line()}. Lite0 at 224 px, one thread, one 640x480 "
            "photograph decoded once, the two models alternated.\n\n" + "\n".join(lines),
        )


if __name__ == "__main__":
    main()
