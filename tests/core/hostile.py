"""The harness of the hostile-input table (``test_hostile_inputs.py``): run one case, classify it.

Each case runs in a forked child process, so that its monkeypatches, locks, dropped privileges
and memory limit end with it. The child runs ``videomage``'s CLI (or a library call) and reports
the exit code, what was printed to stderr, an escaped exception, and its peak memory; the parent
then checks that the files the case protects are unchanged and runs the case's own check.

Outcomes, as the issue counts them:

* ``refused cleanly``: a non-zero exit with a short message containing the expected words;
* ``worked``: exit 0 and the case's check holds;
* ``traceback``: an exception escaped the CLI;
* ``accepted wrongly``: exit 0 but the result is wrong (or should have been refused);
* ``refused late or misleading``: refused, but after the work, with the wrong advice, or a
  refusal of input that should work;
* ``data lost``: a protected file changed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import resource
import shutil
import stat
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFUSED, WORKED, TRACEBACK, WRONG, LATE, LOST = (
    "refused cleanly", "worked", "traceback", "accepted wrongly", "refused late or misleading", "data lost")
OUTCOMES = (REFUSED, WORKED, TRACEBACK, WRONG, LATE, LOST)
#: Memory a case may add on top of the process it was forked from (a guard for the machine;
#: the memory cases check tighter budgets themselves).
MEMORY_GUARD = 3 << 30
NOBODY = 65534


@dataclass
class Plan:
    """What a case does: ``argv`` for the CLI, or ``call`` (returns a value for ``check``)."""

    argv: Sequence[str] | None = None
    call: Callable[[], Any] | None = None
    patch: Callable[[], None] | None = None  # run in the child before the action (monkeypatches)
    check: Callable[[dict], bool] | None = None  # run in the parent on the child's report
    keep: Sequence[Path] = ()  # files that must be byte-identical afterwards
    as_user: bool = False  # drop root privileges first (permission cases)
    memory: bool = False  # measure the child's peak memory above its start


@dataclass
class Case:
    id: str
    item: int  # the item number
    expect: str  # REFUSED or WORKED
    build: Callable[[Any], Plan]
    says: tuple[str, ...] = ()  # words the refusal must contain (case-insensitive)
    never: tuple[str, ...] = ()  # words it must not contain (wrong advice)
    note: str = ""


@dataclass
class Report:
    code: int | None = None
    err: str = ""
    escaped: str | None = None
    value: Any = None
    peak_mb: float | None = None
    extra: dict = field(default_factory=dict)


def _rss_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _child(plan: Plan) -> Report:
    from videomage.cli import main
    from videomage.errors import VideomageError

    report = Report()
    _quiet_libraries()
    if plan.patch is not None:
        plan.patch()
    if plan.as_user and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    size = _rss_kb("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + MEMORY_GUARD, resource.RLIM_INFINITY))
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
    start = _rss_kb("VmRSS")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if plan.argv is not None:
                try:
                    report.code = int(main(list(plan.argv)) or 0)
                except SystemExit as exc:  # argparse refusals
                    report.code = exc.code if isinstance(exc.code, int) else 2
            else:
                try:
                    report.value = plan.call()
                    report.code = 0
                except VideomageError as exc:
                    print(f"videomage: error: {exc}", file=sys.stderr)
                    report.code = 2
    except BaseException as exc:  # noqa: BLE001 - an escaped exception is what we count
        report.escaped = f"{type(exc).__name__}: {exc}"[:2000]
        report.extra["traceback"] = traceback.format_exc()[-3000:]
    report.err = err.getvalue()
    if plan.memory:
        report.peak_mb = (_rss_kb("VmHWM") - start) / 1024
    return report


def run_plan(plan: Plan) -> Report:
    """Run ``plan`` in a forked child; return its report."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test runner
        os.close(read)
        try:
            data = pickle.dumps(_child(plan))
        except BaseException as exc:  # noqa: BLE001
            data = pickle.dumps(Report(escaped=f"harness: {type(exc).__name__}: {exc}"))
        with os.fdopen(write, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return Report(escaped=f"the case's process died (status {status})")
    return pickle.loads(data)


def _snapshot(paths: Sequence[Path]) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.is_file() else None) for p in paths}


def _quiet_libraries() -> None:
    """Silence the progress bars and warnings of the libraries a case loads, so that stderr holds
    what videomage says and nothing else (the bars are a separate matter: quiet phases)."""
    import warnings

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    warnings.simplefilter("ignore")
    with contextlib.suppress(Exception):
        import diffusers
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()


def _message(err: str) -> list[str]:
    """The lines of stderr, without argparse's usage block."""
    lines, in_usage = [], False
    for line in err.replace("\r", "\n").splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and (line.startswith(" ") or not line.strip()):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


def classify(case: Case, env: Any) -> tuple[str, Report]:
    plan = case.build(env)
    before = _snapshot(plan.keep)
    report = run_plan(plan)
    if report.escaped:
        return TRACEBACK, report
    if _snapshot(plan.keep) != before:
        return LOST, report
    try:
        ok = plan.check(report.__dict__) if plan.check is not None else True
    except Exception as exc:  # noqa: BLE001 - a failed check is a wrong result
        report.extra["check"] = f"{type(exc).__name__}: {exc}"
        ok = False
    if case.expect == WORKED:
        if report.code == 0:
            return (WORKED if ok else WRONG), report
        return LATE, report
    if report.code == 0:
        return WRONG, report
    lines = _message(report.err)
    text = " ".join(lines).lower()
    clean = (len(lines) == 1 and all(w.lower() in text for w in case.says)
             and not any(w.lower() in text for w in case.never))
    return (REFUSED if clean and ok else LATE), report


def shared_dir(prefix: str) -> Path:
    """A fresh folder every user may enter (the permission cases run as ``nobody``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def open_to_all(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            p = Path(dirpath) / f
            p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IRGRP)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    open_to_all(dst)
    return dst
