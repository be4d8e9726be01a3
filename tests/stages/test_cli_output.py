"""What the stage commands print: a bar for every long phase, and nothing else.

Generating prior-preservation and fusion-teacher videos takes minutes on a real model, so each
shows a bar; ``--no-progress`` hides every bar, the Hugging Face libraries' weight-loading bar
included; and attaching a second adapter does not make peft warn.
"""

from __future__ import annotations

import warnings

from test_workflow import make_inputs

from videomage.cli import main


def test_long_phases_show_bars_and_no_progress_hides_every_one(tiny_model_dir, tmp_path, capsys, recwarn):
    make_inputs(tmp_path, size=32, frames=4)
    model = ["--model", str(tiny_model_dir)]
    common = ["--steps", "1", "--sample-steps", "1"]

    def subject(word: str, *extra: str) -> str:
        code = main(["learn-subject", *model, "--images", str(tmp_path / "photos" / word), "--token", f"<{word}>",
                     "--class-word", word, "--out", str(tmp_path / f"{word}.safetensors"), *common, *extra])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.err

    assert "prior videos" in subject("toy")
    quiet = subject("dog", "--no-progress")
    assert quiet == "", f"--no-progress still printed: {quiet[:500]!r}"

    fuse = ["fuse", *model, "--subjects", str(tmp_path / "toy.safetensors"), str(tmp_path / "dog.safetensors"),
            "--videos-per-subject", "1", *common]
    assert main([*fuse, "--out", str(tmp_path / "pair.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "teacher videos (A <toy>)" in err and "teacher videos (A <dog>)" in err
    assert main([*fuse, "--out", str(tmp_path / "pair2.safetensors"), "--work-dir", str(tmp_path / "w2"),
                 "--no-progress"]) == 0
    assert capsys.readouterr().err == ""

    assert main(["generate", *model, "--subjects", str(tmp_path / "pair.safetensors"), "--prompt", "<toy> and <dog>",
                 "--sampler", "cfg", "--steps", "1", "--out", str(tmp_path / "out.mp4"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    talk = [f"{w.category.__name__}: {w.message}" for w in recwarn if issubclass(w.category, UserWarning)]
    assert not talk, talk


def test_adapters_attach_and_go_without_a_peft_warning(backbone, adapter):
    adapter.attach(backbone, "a", roles=["spatial"], rank=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter.attach(backbone, "b", roles=["spatial"], rank=2)  # peft: "Already found a `peft_config`"
        adapter.activate(backbone, {"a": 1.0})
        adapter.remove(backbone, "a")  # peft: "Adapter a was active which is now deleted"
    assert adapter.active(backbone) == {}
