"""Print the e2e harness's overhead against the floor (figures, not a test).

harness: one variant through the suite (bake, `make image`, `make run` with MLflow's build, push,
         Job, scheduling, pod run and polling, then gathering facts);
floor:   the same work done directly: docker build of the environment and project images,
         docker push, and `docker run` of train.py against the same tracking server.
Both run in this process, one after the other, so the ratio is measured in one run.
Also prints the last matrix run's wall time and phase table (e2e-report/), if there is one.
Needs CLUSTER=local (or kind/existing) like the suite: make bench-e2e CLUSTER=local
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
from kube.paths import REPO_ROOT
from suite.images import delete_registry_repository, environment_image, first_builds, image_size
from suite.session import E2ESession
from suite.variants import FRAMEWORKS, Variant

VARIANT = Variant("bench-cpu", {"gpu": "0"})


def timed(command: list[str], **kwargs) -> float:
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, **kwargs)
    return time.monotonic() - started


def floor(session: E2ESession, project: Path, name: str = "floor") -> dict[str, float]:
    registry, target = session.target.registry, session.target
    env_image, image = f"{registry}/floor-bench-env:1", f"{registry}/floor-bench:1"
    experiment = mlflow.MlflowClient(session.tracking.uri).create_experiment(f"{name}-{session.id}")
    phases = {"env image": timed(["docker", "build", *target.docker_build_args.split(), "-t", env_image, "."],
                                 cwd=project)}
    with tempfile.TemporaryDirectory() as context:
        subprocess.run(["cp", "-r", str(project), f"{context}/code"], check=True)
        Path(context, "Dockerfile").write_text(
            f"FROM {env_image}\nCOPY code/ /mlflow/projects/code/\nWORKDIR /mlflow/projects/code/\n")
        phases["project image"] = timed(["docker", "build", "-t", image, context])
    phases["push"] = timed(["docker", "push", image])
    phases["container run"] = timed([
        "docker", "run", "--rm", "--network", "host", "-e", f"MLFLOW_TRACKING_URI={session.tracking.uri}",
        "-e", f"MLFLOW_EXPERIMENT_ID={experiment}", "-e", "HOME=/tmp", "-e", "GIT_PYTHON_REFRESH=quiet",
        image, "python", "train.py"])
    for reference in (image, env_image):
        subprocess.run(["docker", "image", "rm", "-f", reference], capture_output=True)
    for repository in ("floor-bench", "floor-bench-env"):
        delete_registry_repository(registry, repository)
    return phases


def layers(reference: str) -> list[str]:
    return json.loads(subprocess.run(["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", reference],
                                     check=True, capture_output=True, text=True).stdout)


def environment_images(session: E2ESession) -> list[str]:
    """Each framework's environment image: its first build on this machine, warm, and after requirements.txt changes.

    The first build (every wheel downloaded and installed; for pytorch, torch with its CUDA libraries) was
    timed by the e2e suite when it built the image; building several GB again here would only repeat it.
    Measured here: `make image` with the layer cache, then after a line is added to requirements.txt, which
    rebuilds only the layers from its COPY on (the CUDA and torch layers stay as they were).
    """
    first = first_builds()
    lines = []
    for framework in FRAMEWORKS:
        run = session.project_run(Variant(f"bench-image-{framework}", {"framework": framework, "gpu": "0"}))
        project = run.bake()
        env_image = environment_image(project)
        build = ["make", "--no-print-directory", "image", f"DOCKER_BUILD_ARGS={session.target.docker_build_args}"]
        try:
            timed(build, cwd=project, env=session.target.env())  # the layer cache, as the e2e suite left it
            warm = timed(build, cwd=project, env=session.target.env())
            before = layers(env_image)
            with open(project / "requirements.txt", "a") as requirements:
                requirements.write("# a pin changed here\n")
            edited = timed(build, cwd=project, env=session.target.env())
            after = layers(env_image)
            size = image_size(env_image)
        finally:
            subprocess.run(["docker", "image", "rm", "-f", env_image], capture_output=True)
        kept = sum(1 for old, new in zip(before, after, strict=False) if old == new)
        built = first.get(framework)
        first_line = (f"first build {built['seconds']:.0f}s (e2e suite, {built['date']})" if built
                      else "first build not recorded (run make e2e first)")
        lines.append(f"  {framework}: environment image {size / 1e9:.2f} GB; {first_line}; warm {warm:.1f}s "
                     f"(layer cache); requirements.txt changed {edited:.0f}s, {len(after) - kept} of {len(after)} "
                     "layers rebuilt (from requirements.txt's COPY on)")
    return lines


def main() -> None:
    report = Path(os.environ.get("E2E_REPORT_DIR", REPO_ROOT / "e2e-report"))
    matrix_seconds = report / "matrix-seconds.txt"
    summary = report / "summary.txt"
    with tempfile.TemporaryDirectory() as work:
        session = E2ESession(Path(work) / "report", Path(work))
        (Path(work) / "report").mkdir()
        session.start()
        try:
            # Warm the caches both sides share, then time each side: the floor's own steps once build the
            # environment image (`make image` then finds its layers) and push its layers (the harness's push
            # then finds them in the registry). The node's image store keeps the layers the e2e suite pulled.
            floor(session, session.project_run(Variant("bench-warmup", VARIANT.answers)).bake(), "warmup")
            run = session.project_run(VARIANT)
            outcome = run.execute()
            if outcome.exit_code != 0:
                raise SystemExit(f"the benchmark variant failed: {outcome.error or outcome.output[-1500:]}")
            harness = {k: v for k, v in outcome.phases.items() if not k.startswith("_") and k != "mlflow build+push"
                       and k not in ("schedule", "pod run")}
            detail = {k: outcome.phases[k] for k in ("mlflow build+push", "schedule", "pod run") if k in outcome.phases}
            floor_phases = floor(session, Path(work) / VARIANT.id / outcome.slug)
            images = environment_images(session)
        finally:
            leftovers = session.close()
    harness_total, floor_total = sum(harness.values()), sum(floor_phases.values())
    print(f"e2e harness overhead ({VARIANT.id}, on the {session.target.name} cluster)")
    print("  harness: " + ", ".join(f"{k} {v:.1f}s" for k, v in harness.items()) + f" = {harness_total:.1f}s")
    print("           inside mlflow run: " + ", ".join(f"{k} {v:.1f}s" for k, v in detail.items()))
    print("  floor:   " + ", ".join(f"{k} {v:.1f}s" for k, v in floor_phases.items()) + f" = {floor_total:.1f}s")
    print(f"  overhead ratio harness/floor: {harness_total / floor_total:.2f}x (target <= 1.25)")
    print(f"environment images (make image, on this machine, base {session.target.base_image})")
    print("\n".join(images))
    if matrix_seconds.exists():
        print(f"  last matrix run (make e2e): {float(matrix_seconds.read_text()):.0f}s wall for the whole matrix "
              f"(target <= 600s on a warm local cluster)")
    if summary.exists():
        print("  per-phase timings of the last e2e run:")
        for line in summary.read_text().splitlines():
            print(f"    {line}")
    if leftovers:
        raise SystemExit(f"benchmark left things behind: {leftovers}")


if __name__ == "__main__":
    main()
