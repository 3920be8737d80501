"""`prometar export --to official`: the official trainer's key names and layout, read back equal, no official code."""
import os

import pytest
import torch

from prometar.build import MODEL_NAME, MODULATOR_NAME, load_learner_state, load_trained_weights
from prometar.cli import main
from prometar.engine.checkpoint import make_checkpoint, save_checkpoint
from prometar.export import export_official
from prometar.learners import build_learner

# The trainable parameters of the official ProMetaR model (its CustomCLIP: `prompt_learner.ctx`, `image_encoder.VPT`
# and a `VPT_shallow` in blocks 1..depth-1 of each tower) at PROMPT_DEPTH_TEXT = PROMPT_DEPTH_VISION = 2, as its
# build_model enables them; written out here from the official code, independently of prometar.learners.
OFFICIAL_DEPTH2 = {"prompt_learner.ctx": "text.0", "text_encoder.transformer.resblocks.1.VPT_shallow": "text.1",
                   "image_encoder.VPT": "vision.0", "image_encoder.transformer.resblocks.1.VPT_shallow": "vision.1"}


class _Model(torch.nn.Module):  # what load_learner_state needs: a `prompt_learner`
    def __init__(self, learner):
        super().__init__()
        self.prompt_learner = learner


def _ivlp(clip, depth=2):
    return build_learner("IVLP", clip, n_ctx_text=4, n_ctx_vision=3, depth_text=depth, depth_vision=depth)


def _run(folder, learner, epochs=(1, 2), modulator_epochs=(1,)):
    """A run folder as both engines write it; each epoch's prompts differ."""
    saved = {}
    for epoch in epochs:
        state = {f"prompt_learner.{k}": torch.randn_like(v) for k, v in learner.state_dict().items()}
        save_checkpoint(make_checkpoint(state, epoch), os.path.join(folder, MODEL_NAME))
        saved[epoch] = state
    for epoch in modulator_epochs:
        save_checkpoint(make_checkpoint({"nets.0.weight": torch.zeros(2)}, epoch), os.path.join(folder, MODULATOR_NAME))
    return saved


def test_export_has_exactly_the_official_keys_and_reads_back_equal(tmp_path, small_clip, capsys):
    learner = _ivlp(small_clip)
    saved = _run(tmp_path / "run", learner)  # epoch 2 has no modulator file: epoch 1 is the latest complete
    dst = tmp_path / "official"
    assert main(["export", "--to", "official", str(tmp_path / "run"), str(dst)]) == 0
    path = dst / MODEL_NAME / "model.pth.tar-1"
    assert f'"{path}"' in capsys.readouterr().out
    assert (dst / MODEL_NAME / "checkpoint").read_text() == "model.pth.tar-1\n"
    exported = torch.load(path, map_location="cpu", weights_only=True)  # plain data
    assert exported["epoch"] == 1 and set(exported) >= {"state_dict", "epoch"}
    state = exported["state_dict"]
    assert set(state) == set(OFFICIAL_DEPTH2)  # no token_prefix/suffix, no frozen CLIP, nothing else
    for official, ours in OFFICIAL_DEPTH2.items():
        assert state[official].shape == getattr(learner, ours.split(".")[0])[int(ours[-1])].shape
        assert torch.equal(state[official], saved[1][f"prompt_learner.{ours}"])

    fresh = _Model(_ivlp(small_clip))
    load_learner_state(fresh, str(path), strict=True)  # this project's reader of official files
    for key, value in fresh.prompt_learner.state_dict().items():
        assert torch.equal(value, saved[1][f"prompt_learner.{key}"]), key
    # and through eval-time loading (official layout: no modulator folder)
    fresh2 = _Model(_ivlp(small_clip))
    load_trained_weights(fresh2, None, str(dst), epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), fresh2.parameters()))


def test_explicit_epoch_and_no_silent_overwrite(tmp_path, small_clip, capsys):
    saved = _run(tmp_path / "run", _ivlp(small_clip), epochs=(1, 2, 3), modulator_epochs=(1, 2, 3))
    path = export_official(str(tmp_path / "run"), str(tmp_path / "out"), epoch=2)
    assert path == str(tmp_path / "out" / MODEL_NAME / "model.pth.tar-2")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(state["prompt_learner.ctx"], saved[2]["prompt_learner.text.0"])
    with pytest.raises(FileExistsError, match="--force"):
        export_official(str(tmp_path / "run"), str(tmp_path / "out"), epoch=2)
    assert export_official(str(tmp_path / "run"), str(tmp_path / "out"), epoch=2, force=True) == path
    assert main(["export", "--to", "official", str(tmp_path / "run"), str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / MODEL_NAME / "model.pth.tar-3").is_file()  # latest complete
    assert main(["export", "--to", "official", "--epoch", "9", str(tmp_path / "run"), str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "run" / MODEL_NAME / "model.pth.tar-9") in err and "1, 2, 3" in err


def test_learners_the_official_model_cannot_hold_are_refused(tmp_path, small_clip, capsys):
    maple = build_learner("MaPLe", small_clip, n_ctx_text=2, depth_text=2)
    _run(tmp_path / "maple", maple, epochs=(1,), modulator_epochs=())
    assert main(["export", "--to", "official", str(tmp_path / "maple"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "proj.0.weight" in err and "IVLP" in err and str(tmp_path / "maple" / MODEL_NAME / "model.pth.tar-1") in err
    assert not (tmp_path / "out" / MODEL_NAME).exists()
    vpt = build_learner("VPT", small_clip, n_ctx_vision=2, depth_vision=2)
    _run(tmp_path / "vpt", vpt, epochs=(1,), modulator_epochs=())
    assert main(["export", "--to", "official", str(tmp_path / "vpt"), str(tmp_path / "out")]) == 2
    assert "text.0" in capsys.readouterr().err
    assert main(["export", "--to", "official", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert f'"{tmp_path / "nothing"}"' in capsys.readouterr().err


def test_coop_runs_and_altered_checkpoints_are_refused(tmp_path, small_clip, capsys):
    """A CoOp-learner run maps onto `prompt_learner.ctx` alone, which the official trainer would load non-strictly
    and run with untrained deep prompts: refused, naming the learner (from the checkpoint or config.yaml)."""
    coop = build_learner("CoOp", small_clip, n_ctx_text=4)
    _run(tmp_path / "coop", coop, epochs=(1,), modulator_epochs=())
    ckpt_path = tmp_path / "coop" / MODEL_NAME / "model.pth.tar-1"
    # without any record of the learner: its tensors show it (no vision prompts)
    assert main(["export", "--to", "official", str(tmp_path / "coop"), str(tmp_path / "out")]) == 2
    assert "no vision.0 prompt (the official image_encoder.VPT" in capsys.readouterr().err
    (tmp_path / "coop" / "config.yaml").write_text("TRAINER:\n  PROMETAR:\n    LEARNER: CoOp\n")
    assert main(["export", "--to", "official", str(tmp_path / "coop"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "LEARNER CoOp" in err and "non-strictly" in err and str(ckpt_path) in err
    ckpt = torch.load(ckpt_path, weights_only=True)  # the engines also record the learner in the file
    ckpt["learner"] = "CoOp"
    os.remove(tmp_path / "coop" / "config.yaml")
    torch.save(ckpt, ckpt_path)
    assert main(["export", "--to", "official", str(tmp_path / "coop"), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / MODEL_NAME).exists()
    # a published epoch whose learner file was altered afterwards is refused, naming the file
    from prometar.engine.integrity import write_manifest

    run = tmp_path / "ivlp"
    _run(run, _ivlp(small_clip), epochs=(1,), modulator_epochs=(1,))
    write_manifest(str(run), 1, [str(run / MODEL_NAME / "model.pth.tar-1"), str(run / MODULATOR_NAME / "model.pth.tar-1")])
    with open(run / MODEL_NAME / "model.pth.tar-1", "ab") as f:
        f.write(b"\0")
    assert main(["export", "--to", "official", str(run), str(tmp_path / "out")]) == 2
    assert "not the file epoch 1 saved" in capsys.readouterr().err


def test_official_file_saved_from_dataparallel_loads_too(tmp_path, small_clip):
    """An official checkpoint written from a DataParallel model has every key under `module.`; its prompts load
    the same (the one `module.` strip is `prometar.engine.checkpoint.strip_module_prefix`)."""
    learner = _ivlp(small_clip)
    _run(tmp_path / "run", learner, epochs=(1,))
    plain = export_official(str(tmp_path / "run"), str(tmp_path / "official"))
    ckpt = torch.load(plain, weights_only=True)
    ckpt["state_dict"] = {f"module.{k}": v for k, v in ckpt["state_dict"].items()}
    wrapped = tmp_path / "dp" / "model.pth.tar-1"
    wrapped.parent.mkdir()
    torch.save(ckpt, wrapped)
    a, b = _Model(_ivlp(small_clip)), _Model(_ivlp(small_clip))
    load_learner_state(a, plain, strict=True)
    load_learner_state(b, str(wrapped), strict=True)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), _ivlp(small_clip).parameters()))
