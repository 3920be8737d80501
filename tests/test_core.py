"""Core: offline CLIP loading, prompting around the unmodified CLIP, truncated text path, precision."""
import copy

import pytest
import torch
import torch.nn.functional as F

from prometar.clip_loader import ClipLoadError, build_clip, load_clip, openai_clip, resolve_clip_path, save_clip
from prometar.learners import build_learner
from prometar.model import PromptedCLIP
from prometar.prompting import encode_image, encode_text, eot_positions

clip = openai_clip()

NAMES = ["cat", "golden_retriever", "red fire truck", "yin_yang"]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ----------------------------------------------------------------------------- loading
def test_state_dict_and_jit_archives_load_identically(tmp_path):
    model = build_clip("tiny", seed=3)
    sd = save_clip(model, tmp_path / "sd.pt")
    jit = save_clip(model, tmp_path / "jit.pt", jit=True)
    a, b = load_clip(sd, precision="fp32"), load_clip(jit, precision="fp32")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert all(not p.requires_grad for p in a.parameters())
    assert load_clip(sd, precision="fp16").visual.conv1.weight.dtype == torch.float16


def test_model_name_resolves_in_cache_dir(tmp_path, monkeypatch):
    save_clip(build_clip("tiny"), tmp_path / "ViT-B-16.pt")
    monkeypatch.setenv("PROMETAR_CLIP_CACHE", str(tmp_path))
    assert resolve_clip_path("ViT-B/16") == tmp_path / "ViT-B-16.pt"


def test_missing_weights_name_the_paths_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETAR_CLIP_CACHE", str(tmp_path))
    monkeypatch.delenv("PROMETAR_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ClipLoadError) as err:
        load_clip("ViT-B/16")
    msg = str(err.value)
    assert str(tmp_path / "ViT-B-16.pt") in msg and "ViT-B/16" in msg and "PROMETAR_ALLOW_DOWNLOAD" in msg
    with pytest.raises(ClipLoadError, match="neither an existing file"):
        load_clip(tmp_path / "nope.pt")


def test_corrupt_weights_file_is_reported(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ClipLoadError, match=f"could not read CLIP weights from {bad}"):
        load_clip(bad)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(ClipLoadError, match="without CLIP keys"):
        load_clip(other)


# ----------------------------------------------------------------------------- exactness vs clip
def test_context_init_at_depth_1_equals_clip_encode_text(small_clip):
    learner = build_learner("CoOp", small_clip, n_ctx_text=4, ctx_init="a photo of a")
    model = PromptedCLIP(small_clip, learner, NAMES, precision="fp32", teacher_templates=None)
    with torch.no_grad():
        ours = model.text_features(model.prompts())
        tokens = clip.tokenize([f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
        ref = small_clip.encode_text(tokens)
    assert rel_err(ours, ref) <= 1e-5


def test_truncated_text_path_equals_full_length(small_clip):
    tokens = clip.tokenize(["a photo of a dog.", "x", "a very long description of a rare object."])
    prompts = [torch.randn(4, 128) * 0.1, torch.randn(4, 128) * 0.1]
    with torch.no_grad():
        emb = small_clip.token_embedding(tokens)
        eot = eot_positions(tokens)
        short = encode_text(small_clip, emb, eot, prompts)
        full = encode_text(small_clip, emb, eot, prompts, length=77)
        twice = encode_text(small_clip, emb, eot, prompts, double_diff=True)
    assert int(eot.max()) + 1 < 77
    assert rel_err(short, full) <= 1e-5
    assert rel_err(twice, full) <= 1e-5


def test_image_features_without_prompts_equal_encode_image(small_clip):
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = small_clip.encode_image(images)
        assert rel_err(encode_image(small_clip.visual, images), ref) <= 1e-5
        assert rel_err(encode_image(small_clip.visual, images, double_diff=True), ref) <= 1e-5


def _reference_with_hooks(clip_model, tokens, images, text_prompts, vision_prompts):
    """Deep prompts placed with forward hooks on CLIP's own forward (LND layout, CLIP's own attention)."""
    handles = []
    n_t = text_prompts[0].shape[0]

    def put_text0(module, inp, out):
        out = out.clone()
        out[:, 1:1 + n_t] = text_prompts[0].to(out.dtype)
        return out

    handles.append(clip_model.token_embedding.register_forward_hook(put_text0))
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 0 < i < len(text_prompts):
            def pre(module, args, p=text_prompts[i]):
                x = args[0].clone()
                x[1:1 + p.shape[0]] = p.to(x.dtype)[:, None, :]
                return (x,)
            handles.append(block.register_forward_pre_hook(pre))
    n_v = vision_prompts[0].shape[0]

    def append_vision(module, args):
        x = args[0]
        return (torch.cat([x, vision_prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1),)

    handles.append(clip_model.visual.ln_pre.register_forward_pre_hook(append_vision))
    for i, block in enumerate(clip_model.visual.transformer.resblocks):
        if 0 < i < len(vision_prompts):
            def pre_v(module, args, p=vision_prompts[i]):
                x = args[0].clone()
                x[-n_v:] = p.to(x.dtype)[:, None, :]
                return (x,)
            handles.append(block.register_forward_pre_hook(pre_v))
    try:
        return clip_model.encode_text(tokens), clip_model.encode_image(images)
    finally:
        for h in handles:
            h.remove()


def test_ivlp_placement_matches_hooked_clip(small_clip):
    learner = build_learner("IVLP", small_clip, n_ctx_text=4, n_ctx_vision=3, depth_text=2, depth_vision=3)
    model = PromptedCLIP(small_clip, learner, NAMES, precision="fp32", teacher_templates=None)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for p in learner.parameters():
            p.normal_(0, 0.5)
        prompts = model.prompts()
        text, image = model.text_features(prompts), model.image_features(images, prompts)
        tokens = clip.tokenize([f"a photo of a {n.replace('_', ' ')}." for n in NAMES])
        ref_text, ref_image = _reference_with_hooks(small_clip, tokens, images, prompts.text, prompts.vision)
    assert rel_err(text, ref_text) <= 1e-5
    assert rel_err(image, ref_image) <= 1e-5


# ----------------------------------------------------------------------------- training hygiene
def test_gradients_reach_every_prompt_tensor_and_nothing_else(small_clip):
    learner = build_learner("IVLP", small_clip, n_ctx_text=2, n_ctx_vision=2, depth_text=3, depth_vision=3,
                            ctx_init="a photo")
    model = PromptedCLIP(small_clip, learner, NAMES, precision="fp32", teacher_templates=None)
    logits = model(torch.randn(2, 3, 32, 32))
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    assert all(p.grad is None and not p.requires_grad for p in small_clip.parameters())
    assert len(list(learner.parameters())) == 6


def test_state_dict_holds_only_the_learner(small_clip):
    learner = build_learner("IVLP", small_clip, depth_text=2, depth_vision=2)
    model = PromptedCLIP(small_clip, learner, NAMES, precision="fp32", teacher_templates=None)
    keys = list(model.state_dict())
    assert keys == ["prompt_learner.text.0", "prompt_learner.text.1", "prompt_learner.vision.0",
                    "prompt_learner.vision.1"]
    other = PromptedCLIP(copy.deepcopy(small_clip), build_learner("IVLP", small_clip, depth_text=2, depth_vision=2),
                         NAMES[:2], precision="fp32", teacher_templates=None)
    result = other.load_state_dict(model.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(other.prompt_learner.vision[1], learner.vision[1])


def test_eval_text_cache_follows_parameter_updates(small_clip):
    learner = build_learner("IVLP", small_clip, depth_text=2, depth_vision=1)
    model = PromptedCLIP(small_clip, learner, NAMES, precision="fp32", teacher_templates=None).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(images)
        assert torch.equal(a, model(images))
        learner.text[1].add_(torch.randn_like(learner.text[1]))  # (a constant shift would vanish in LayerNorm)
        b = model(images)
    model.train()
    c = model(images).detach()
    assert not torch.allclose(a, b) and torch.allclose(b, c, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_low_precision_paths_run_and_track_fp32(small_clip_path, precision):
    ref_clip = load_clip(small_clip_path, precision="fp32")
    low_clip = load_clip(small_clip_path, precision=precision)
    torch.manual_seed(0)
    ref = PromptedCLIP(ref_clip, build_learner("IVLP", ref_clip, depth_text=2, depth_vision=2), NAMES,
                       precision="fp32", teacher_templates=None)
    torch.manual_seed(0)
    low = PromptedCLIP(low_clip, build_learner("IVLP", low_clip, depth_text=2, depth_vision=2), NAMES,
                       precision=precision, amp_dtype="bf16", teacher_templates=None)
    images = torch.randn(2, 3, 32, 32)
    logits = low(images)
    assert logits.dtype == torch.float32
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in low.prompt_learner.parameters())
    with torch.no_grad():
        assert rel_err(low.text_features(low.prompts()), ref.text_features(ref.prompts())) < 0.05
