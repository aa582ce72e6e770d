"""Print how long cookiecutter takes to generate one project, per matrix variant (a figure, not a test)."""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.matrix import VARIANTS, variant_id  # noqa: E402

ROUNDS = 5


def bake_seconds(variant: dict) -> list[float]:
    timings = []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            cookiecutter(str(ROOT), no_input=True, extra_context=variant, output_dir=out, default_config=True)
            timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    print(f"generation time per project (median of {ROUNDS}, hooks included)")
    medians = []
    for variant in VARIANTS:
        median = statistics.median(bake_seconds(variant))
        medians.append(median)
        print(f"  {median * 1000:7.1f} ms  {variant_id(variant)[:70]}")
    print(f"  all {len(VARIANTS)} variants: median {statistics.median(medians) * 1000:.1f} ms, "
          f"max {max(medians) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
