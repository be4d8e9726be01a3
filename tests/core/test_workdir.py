"""Work folders: bound to the job that made them, moved aside for another job, held by one run."""

from __future__ import annotations

import json
import os

import pytest

from videomage import workdir
from videomage.errors import ConfigError
from videomage.workdir import JOB_FILE, WorkDirBusy, bind, lock, model_digest, release


def test_the_same_job_resumes_and_another_job_starts_fresh(tmp_path):
    work = tmp_path / "toy.safetensors.work"
    logs: list[str] = []
    assert bind(work, {"images": "a", "lr": "1", "steps": "10"}, log=logs.append) is False
    (work / "ckpt-subject-toy").mkdir()
    (work / "ckpt-subject-toy" / "checkpoint.safetensors").write_bytes(b"state")
    assert bind(work, {"images": "a", "lr": "1", "steps": "10"}, log=logs.append) is True
    assert bind(work, {"images": "a", "lr": "1", "steps": "20"}, log=logs.append) is True  # trains on
    assert logs == []

    assert bind(work, {"images": "b", "lr": "2", "steps": "20"}, log=logs.append) is False
    (aside,) = tmp_path.glob("toy.safetensors.work.stale-*")
    assert (aside / "ckpt-subject-toy" / "checkpoint.safetensors").read_bytes() == b"state"  # kept, not deleted
    assert not (work / "ckpt-subject-toy").exists()
    assert "changed: images, lr" in logs[0] and str(aside) in logs[0]
    assert json.loads((work / JOB_FILE).read_text())["parts"]["images"] == "b"


def test_fewer_steps_is_another_job(tmp_path):
    work = tmp_path / "w"
    bind(work, {"steps": "10"})
    (work / "cache").mkdir()
    assert bind(work, {"steps": "5"}, log=lambda m: None) is False
    assert not (work / "cache").exists()


def test_a_folder_of_other_files_is_refused_not_moved(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="did not write.*thesis.tex"):
        bind(tmp_path, {"steps": "1"})
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_work_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        bind(tmp_path / "f", {"steps": "1"})


def _lock_in_another_process(work) -> tuple[int, str]:
    """Try ``lock(work)`` in a forked process; its exit code (3: refused) and message."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code, message = 0, ""
        workdir._held.clear()  # a forked child shares its parent's lock; a separate run does not
        try:
            lock(work)
        except WorkDirBusy as exc:
            code, message = 3, str(exc)
        os.write(write, message.encode())
        os._exit(code)
    os.close(write)
    message = os.read(read, 4096).decode()
    os.close(read)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), message


def test_a_second_process_is_refused_with_the_first_ones_pid(tmp_path):
    work = tmp_path / "w"
    lock(work)
    try:
        code, message = _lock_in_another_process(work)
        assert code == 3 and f"process {os.getpid()}" in message and str(work) in message
    finally:
        release(work)
    assert _lock_in_another_process(work) == (0, "")


def test_model_digest_sees_changed_weights(tmp_path):
    (tmp_path / "unet").mkdir()
    weights = tmp_path / "unet" / "w.safetensors"
    weights.write_bytes(b"a" * 100)
    before = model_digest(str(tmp_path))
    weights.write_bytes(b"b" * 100)
    assert model_digest(str(tmp_path)) != before
    assert model_digest("org/model") == model_digest("org/model")


def test_model_digest_sees_a_change_in_the_middle_of_a_large_file(tmp_path):
    """Two checkpoints of one architecture that differ in some layers only: same size, same first
    and last megabytes, other bytes in between."""
    weights = tmp_path / "transformer" / "w.safetensors"
    weights.parent.mkdir()
    data = bytearray(b"x" * (48 << 20))  # 48 MiB
    weights.write_bytes(bytes(data))
    before = model_digest(str(tmp_path))
    data[20 << 20 : (20 << 20) + (2 << 20)] = b"y" * (2 << 20)  # 2 MiB changed at 20 MiB
    weights.write_bytes(bytes(data))
    assert model_digest(str(tmp_path)) != before
