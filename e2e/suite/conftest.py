"""Fixtures of the e2e suite (CLUSTER=kind|local|existing): the session, the concurrent runs, node capacity.

Everything the suite creates is removed at the end, also on failure or Ctrl-C, and the suite then
asserts that nothing is left. The session itself lives in session.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kube.nodes import advertise_fake_gpus, advertised_gpus
from kube.paths import REPO_ROOT

from .outage import TrackingOutage
from .progress import progress
from .resume_failed import resume_failed_run
from .runner import Outcome
from .session import E2ESession
from .targets import TargetSetupError
from .variants import FAILING, MATRIX, RESUMED_AFTER_DEADLINE, TRACKING_OUTAGE, Variant

PHASES = ["bake", "env image", "env push", "mlflow build+push", "schedule", "pod run", "mlflow run", "assert"]
SESSION_KEY = pytest.StashKey[E2ESession]()


def report_dir() -> Path:
    return Path(os.environ.get("E2E_REPORT_DIR", REPO_ROOT / "e2e-report")).resolve()


def pytest_configure(config):
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")


@pytest.fixture(scope="session")
def e2e(request, tmp_path_factory) -> E2ESession:
    report = report_dir()
    shutil.rmtree(report, ignore_errors=True)
    report.mkdir(parents=True)
    try:
        session = E2ESession(report, tmp_path_factory.mktemp("e2e"))
    except TargetSetupError as err:
        pytest.exit(f"e2e: the cluster could not be set up, so no test ran.\n{err}", returncode=3)
    request.config.stash[SESSION_KEY] = session  # for the summary table at the end
    try:
        yield session.start()
    finally:
        leftovers = session.close()
        if leftovers:
            pytest.fail("the e2e suite left things behind: " + "; ".join(leftovers), pytrace=False)
        progress("cleanup verified: no namespaces, pods, images, registry tags, labels or servers left")


@pytest.fixture(scope="session")
def tracking_outage(e2e) -> TrackingOutage:
    """The tracking-outage scenario (outage.py), started by `background_scenarios` when its test is selected."""
    return TrackingOutage(e2e, TRACKING_OUTAGE, after_epoch=20).start()


@pytest.fixture(scope="session", autouse=True)
def background_scenarios(request) -> Iterator[TrackingOutage | None]:
    """Starts the selected scenarios that are mostly waiting, at the session's first test, so they wait beside it;
    at the end, waits for them before the session cleans up."""
    if not any("tracking_outage" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    outage = request.getfixturevalue("tracking_outage")
    yield outage
    with contextlib.suppress(Exception):  # its own test reports what went wrong
        outage.settle(timeout=60)


def wanted_runs(items: list[pytest.Item]) -> list[Variant]:
    """The runs the selected tests look at (a matrix test's `variant`, the failing runs of a `runs` marker), in
    the matrix's order: `-k pytorch` runs only the pytorch variants, `-k resume` only the run it resumes."""
    wanted = set()
    for item in items:
        if "concurrent_runs" not in getattr(item, "fixturenames", ()):
            continue
        callspec = getattr(item, "callspec", None)
        if callspec and "variant" in callspec.params:
            wanted.add(callspec.params["variant"].id)
        wanted |= {variant.id for marker in item.iter_markers("runs") for variant in marker.args}
    return [variant for variant in MATRIX + FAILING if variant.id in wanted]


@pytest.fixture(scope="session")
def concurrent_runs(e2e, request, background_scenarios) -> dict[str, Outcome]:
    """The option matrix and the runs that must fail (those the selected tests need), run concurrently
    (E2E_JOBS at a time) on one cluster.

    Each is a project of its own with its own queue, so none waits for another's outcome.
    """
    runs = wanted_runs(request.session.items)

    def until_the_scenario_ended() -> None:
        """Its pod counts as one of the pool's runs until it ends (outage.py)."""
        with contextlib.suppress(Exception):  # its own test reports what went wrong
            background_scenarios.settle(timeout=TRACKING_OUTAGE.deadline + 600)

    started = time.monotonic()
    # In one Run:ai project's queue, a run of higher priority (interactive, build-preemptible) preempts a
    # train run when the GPUs are taken, as Run:ai does: there the variants run one at a time.
    jobs = int(os.environ.get("E2E_JOBS", "1" if e2e.target.runai_project else "3"))
    outcomes = e2e.run_all(runs, jobs, busy=until_the_scenario_ended if background_scenarios else None,
                           follow_ups={RESUMED_AFTER_DEADLINE.id: resume_failed_run})
    seconds = time.monotonic() - started
    matrix = sum(variant in MATRIX for variant in runs)
    progress(f"matrix of {matrix} variants and {len(runs) - matrix} failing runs ran in {seconds:.0f}s")
    if len(runs) == len(MATRIX + FAILING):  # the benchmark's figure is the whole matrix's
        (e2e.report_dir / "matrix-seconds.txt").write_text(f"{seconds:.1f}\n")
    return outcomes


@pytest.fixture
def failing_outcome(e2e, concurrent_runs) -> Callable[[Variant], Outcome]:
    """A failing run's outcome (made beside the matrix, see `runs` markers), or skip where the target cannot run it."""
    def outcome_of(variant: Variant) -> Outcome:
        if e2e.cannot_run(variant):
            pytest.skip(e2e.cannot_run(variant))
        return concurrent_runs[variant.id]
    return outcome_of


@pytest.fixture
def timed_assertions(request):
    """Adds the assertion phase to an outcome's timings."""
    started = time.monotonic()
    holder: dict = {}
    yield holder
    if "outcome" in holder:
        holder["outcome"].phases["assert"] = time.monotonic() - started


@pytest.fixture
def one_gpu_node(e2e):
    """Shrink the GPU node to one GPU for this test, then restore it."""
    if not e2e.target.may_resize_gpus or not e2e.target.gpu_nodes:
        pytest.skip(f"changes node capacity, which the {e2e.target.name} target does not allow")
    node = e2e.target.gpu_nodes[0]
    before = advertised_gpus(e2e.api, node)
    advertise_fake_gpus(e2e.api, node, 1)
    yield node
    advertise_fake_gpus(e2e.api, node, before)


def pytest_terminal_summary(terminalreporter):
    session = terminalreporter.config.stash.get(SESSION_KEY, None)
    if not session or not session.outcomes:
        return
    header = f"{'variant':22s}" + "".join(f"{p:>18s}" for p in PHASES) + f"{'outcome':>12s}"
    lines = [header]
    for o in session.outcomes:
        cells = "".join(f"{o.phases[p]:17.1f}s" if p in o.phases else f"{'-':>18s}" for p in PHASES)
        status = o.run.info.status if o.run else ("ERROR" if o.error else "no run")
        lines.append(f"{o.variant.id:22s}{cells}{status:>12s}")
    terminalreporter.write_sep("=", "e2e summary (seconds per phase)")
    for line in lines:
        terminalreporter.write_line(line)
    if session.report_dir.exists():
        (session.report_dir / "summary.txt").write_text("\n".join(lines) + "\n")
