"""More CLIPs: every OpenAI name (ResNets included), open_clip models in all their forms, which learners apply to
which towers, and exactness per family against the libraries' own encoders (float64) and a hook reference."""
import json
import shutil

import pytest
import torch
from torch import nn

from backbone_files import (OPEN_CLIP_VARIANT, OPEN_CLIP_VIT, VARIANT_PREPROCESS, install_in_hf_cache,
                            open_clip_model, save_open_clip_folder)
from prometar.backbone import ClipLoadError, TowerNotSupported
from prometar.clip_loader import (CLIP, CLIP_SHAPES, build_clip, check_complete_clip, clip_architecture, load_clip,
                                  openai_clip, save_clip)
from prometar.learners import build_learner, learners_for
from prometar.model import PromptedCLIP
from prometar.towers import backbone_info, text_tower, vision_tower

oc_module = pytest.importorskip("prometar._open_clip", reason="open_clip_torch is not installed (pip install -e '.[test]')")

clip = openai_clip()
OPENAI_NAMES = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]
NAMES = ["cat", "golden_retriever", "red fire truck"]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("openai")
    return {"vit": save_clip(build_clip("tiny", seed=1), root / "vit.pt"),
            "rn": save_clip(build_clip("tiny-rn", seed=1), root / "rn.pt")}


@pytest.fixture(scope="module")
def open_clip_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    vit = open_clip_model(OPEN_CLIP_VIT, seed=2)
    variant = open_clip_model(OPEN_CLIP_VARIANT, seed=3, preprocess=VARIANT_PREPROCESS)
    return {"vit": (vit, save_open_clip_folder(vit, dict(OPEN_CLIP_VIT), root / "vit")),
            "variant": (variant, save_open_clip_folder(variant, dict(OPEN_CLIP_VARIANT), root / "variant"))}


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


# ----------------------------------------------------------------------------- OpenAI names
@pytest.mark.parametrize("name", OPENAI_NAMES)
def test_every_openai_name_builds_from_its_cache_file(name, openai_files, tmp_path, monkeypatch):
    """The name resolves to OpenAI's file name in the cache and builds a CLIP of its family from it; the name's
    real shape (CLIP_SHAPES) round-trips through the state-dict derivation and the completeness check."""
    resnet = name.startswith("RN")
    monkeypatch.setenv("PROMETAR_CLIP_CACHE", str(tmp_path))
    shutil.copy(openai_files["rn" if resnet else "vit"], tmp_path / clip.clip._MODELS[name].rsplit("/", 1)[1])
    model = load_clip(name, precision="fp32")
    assert isinstance(model.visual, clip.model.ModifiedResNet if resnet else clip.model.VisionTransformer)
    assert backbone_info(model).name == name and not any(p.requires_grad for p in model.parameters())
    with torch.device("meta"):
        state = CLIP(**CLIP_SHAPES[name]).state_dict()
    assert clip_architecture(state) == CLIP_SHAPES[name]
    assert check_complete_clip(state, name) == CLIP_SHAPES[name]


@pytest.mark.parametrize("name", OPENAI_NAMES)
def test_openai_shapes_agree_with_open_clip_configs(name):
    """An independent source for the real shapes: open_clip's own config of the same architecture."""
    ref = oc_module.factory.get_model_config(name.replace("/", "-").replace("@336px", "-336"))
    ours = CLIP_SHAPES[name]
    layers = ref["vision_cfg"]["layers"]
    assert (ours["embed_dim"], ours["image_resolution"], ours["vision_width"]) == \
        (ref["embed_dim"], ref["vision_cfg"]["image_size"], ref["vision_cfg"]["width"])
    assert ours["vision_layers"] == (tuple(layers) if isinstance(layers, list) else layers)
    assert (ours["transformer_width"], ours["transformer_heads"], ours["transformer_layers"]) == \
        (ref["text_cfg"]["width"], ref["text_cfg"]["heads"], ref["text_cfg"]["layers"])


def test_resnet_torchscript_and_state_dict_files_load_identically(tmp_path):
    model = build_clip("tiny-rn", seed=4)
    a = load_clip(save_clip(model, tmp_path / "sd.pt", fp16=False), precision="fp32")
    b = load_clip(save_clip(model, tmp_path / "jit.pt", fp16=False, jit=True), precision="fp32")
    assert same_weights(a, b) and isinstance(a.visual, clip.model.ModifiedResNet)


def test_truncated_resnet_file_is_refused_naming_the_block(tmp_path):
    state = build_clip("tiny-rn").state_dict()
    del state["visual.layer2.0.conv1.weight"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(ClipLoadError, match=r"missing 1 key: visual\.layer2\.0\.\*"):
        load_clip(tmp_path / "cut.pt")


# ----------------------------------------------------------------------------- learners x towers
def test_resnet_takes_text_learners_only(openai_files):
    model = load_clip(openai_files["rn"], precision="fp32")
    assert learners_for(model) == ["CoOp"]
    for learner, options in (("IVLP", {}), ("VPT", {"depth_vision": 1}), ("MaPLe", {"depth_text": 1})):
        with pytest.raises(TowerNotSupported, match=r"LEARNER %s puts prompts into the vision tower.*ModifiedResNet "
                                                    r"\(ResNet\).*Learners for this model: CoOp" % learner):
            build_learner(learner, model, **options)
    build_learner("CoOp", model)  # text prompts, the image tower runs as it is


def test_timm_image_tower_is_fixed_and_named(tmp_path):
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "timm_model_name": "vit_tiny_patch16_224",
                                           "timm_model_pretrained": False, "timm_pool": "token", "timm_proj": "linear"},
           "text_cfg": dict(OPEN_CLIP_VIT["text_cfg"])}
    folder = save_open_clip_folder(open_clip_model(cfg), cfg, tmp_path / "timm")
    model = load_clip(str(folder), precision="fp32")
    assert learners_for(model) == ["CoOp"]
    with pytest.raises(TowerNotSupported, match="TimmModel, timm vit_tiny_patch16_224"):
        build_learner("VPT", model, depth_vision=1)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(vision_tower(model).encode(images), model.encode_image(images))


def test_other_tokenizers_are_refused_naming_them(tmp_path):
    cfg = json.loads(json.dumps(OPEN_CLIP_VIT))
    cfg["text_cfg"]["hf_tokenizer_name"] = "bert-base-uncased"
    folder = save_open_clip_folder(open_clip_model(cfg), cfg, tmp_path / "bert")
    model = load_clip(str(folder), precision="fp32")
    with pytest.raises(TowerNotSupported, match=r"tokenizer is HFTokenizer\(bert-base-uncased\)"):
        PromptedCLIP(model, build_learner("CoOp", build_clip("tiny")), NAMES, teacher_templates=None)


@pytest.mark.parametrize("arch, text_ok, vision", [
    ("ViT-B-16", True, "prompts"), ("ViT-H-14-378-quickgelu", True, "prompts"), ("ViT-bigG-14", True, "prompts"),
    ("EVA02-B-16", True, "TimmModel"), ("convnext_base_w", True, "TimmModel"), ("PE-Core-B-16", True, "TimmModel"),
    ("RN50-quickgelu", True, "ModifiedResNet"), ("ViT-B-16-SigLIP", False, "TimmModel"),
    ("ViT-L-14-CLIPA", False, "prompts")])
def test_open_clip_architectures_get_the_towers_the_readme_lists(arch, text_ok, vision):
    """The README's table of open_clip families, checked on the real configs (models built on the meta device)."""
    from prometar.backbone import INFO_ATTR, BackboneInfo
    from prometar.open_clip_loader import OpenClipSpec, _instantiate, _tokenizer_of

    cfg = oc_module.factory.get_model_config(arch)
    with torch.device("meta"):
        model = _instantiate(cfg, OpenClipSpec(arch, arch, None))
    setattr(model, INFO_ATTR, BackboneInfo(arch, "open_clip", (224, 224), tokenizer=_tokenizer_of(cfg, arch)[0]))
    if text_ok:
        assert text_tower(model).prompt_problem() is None
    else:
        with pytest.raises(TowerNotSupported, match="tokenizer is HFTokenizer"):
            text_tower(model)
    tower = vision_tower(model)
    assert tower.promptable if vision == "prompts" else (not tower.promptable and vision in tower.label)


def test_coca_models_are_refused():
    from prometar.open_clip_loader import OpenClipSpec, _instantiate

    with pytest.raises(ClipLoadError, match="CoCa"):
        _instantiate(oc_module.factory.get_model_config("coca_ViT-B-32"), OpenClipSpec("coca", "coca_ViT-B-32", None))


# ----------------------------------------------------------------------------- open_clip names
def test_local_folder_and_local_dir_forms_load_the_saved_model(open_clip_folders):
    for key, (saved, folder) in open_clip_folders.items():
        for name in (str(folder), f"local-dir:{folder}"):
            model = load_clip(name, precision="fp32")
            assert same_weights(model, saved), name
    info = backbone_info(load_clip(str(open_clip_folders["variant"][1]), precision="fp32"))
    assert (info.image_size, info.mean, info.std, info.interpolation, info.context_length) == \
        ((32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 32)
    assert backbone_info(load_clip(str(open_clip_folders["vit"][1]))).context_length == 40


def test_hf_hub_form_reads_the_hugging_face_cache(open_clip_folders, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("PROMETAR_ALLOW_DOWNLOAD", raising=False)
    saved, folder = open_clip_folders["vit"]
    with pytest.raises(ClipLoadError) as err:
        load_clip("hf-hub:someone/tiny-clip")
    expected = tmp_path / "hub" / "models--someone--tiny-clip" / "snapshots" / "<revision>" / "open_clip_config.json"
    assert str(expected) in str(err.value) and "hf download someone/tiny-clip" in str(err.value)
    install_in_hf_cache(folder, tmp_path / "hub", "someone/tiny-clip", files=["open_clip_config.json"])
    with pytest.raises(ClipLoadError, match="snapshots/0123456789abcdef0123456789abcdef01234567/open_clip_model"):
        load_clip("hf-hub:someone/tiny-clip")  # config there, weights not: the exact snapshot path is named
    install_in_hf_cache(folder, tmp_path / "hub", "someone/tiny-clip")
    assert same_weights(load_clip("hf-hub:someone/tiny-clip", precision="fp32"), saved)


def test_architecture_with_a_weights_file(open_clip_folders, tmp_path):
    saved, _ = open_clip_folders["vit"]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "prometar-test-tiny.json").write_text(json.dumps(OPEN_CLIP_VIT))
    oc_module.factory.add_model_config(tmp_path / "cfg")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saved.state_dict().items()}},
               tmp_path / "epoch_3.pt")  # open_clip's training checkpoint (DDP names)
    model = load_clip(f"open_clip:prometar-test-tiny/{tmp_path / 'epoch_3.pt'}", precision="fp32")
    assert same_weights(model, saved)
    with pytest.raises(ClipLoadError, match="names no weights.*open_clip:prometar-test-tiny/PRETRAINED"):
        load_clip("open_clip:prometar-test-tiny")
    with pytest.raises(ClipLoadError, match="weights file not found"):
        load_clip(f"open_clip:prometar-test-tiny/{tmp_path / 'nope.pt'}")


def test_pretrained_tags_are_looked_up_where_open_clip_downloads_them(tmp_path, monkeypatch):
    from prometar.open_clip_loader import resolve_open_clip

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("PROMETAR_ALLOW_DOWNLOAD", raising=False)
    name = "open_clip:ViT-B-16/laion2b_s34b_b88k"
    repo = tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K"
    with pytest.raises(ClipLoadError) as err:
        load_clip(name)
    msg = str(err.value)
    for file in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        assert str(repo / "snapshots" / "<revision>" / file) in msg
    assert "hf download laion/CLIP-ViT-B-16-laion2B-s34B-b88K open_clip_model.safetensors" in msg
    assert "PROMETAR_ALLOW_DOWNLOAD=1" in msg
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    snapshot = install_in_hf_cache(tmp_path / "w", tmp_path, "laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
    spec = resolve_open_clip(name)
    assert spec.weights == snapshot / "open_clip_pytorch_model.bin" and spec.arch == "ViT-B-16"
    with pytest.raises(ClipLoadError, match="neither a pretrained tag of ViT-B-16 .*laion2b_s34b_b88k"):
        load_clip("open_clip:ViT-B-16/laion9b")
    with pytest.raises(ClipLoadError, match="'ViT-Q-16' is not an open_clip architecture"):
        load_clip("open_clip:ViT-Q-16/openai")


def test_quickgelu_tags_build_their_architecture_with_quickgelu():
    from prometar.open_clip_loader import OpenClipSpec, _model_config

    tag = oc_module.pretrained.get_pretrained_cfg("ViT-B-16", "openai")
    cfg, _ = _model_config(OpenClipSpec("open_clip:ViT-B-16/openai", "ViT-B-16", None, pretrained_cfg=tag))
    assert cfg.get("quick_gelu") is True and not oc_module.factory.get_model_config("ViT-B-16").get("quick_gelu")


def test_folder_without_weights_names_the_expected_files(open_clip_folders, tmp_path):
    (tmp_path / "f").mkdir()
    shutil.copy(open_clip_folders["vit"][1] / "open_clip_config.json", tmp_path / "f")
    with pytest.raises(ClipLoadError, match="no weights in .*open_clip_model.safetensors or .*open_clip_pytorch_model"):
        load_clip(str(tmp_path / "f"))


def test_input_config_must_match_the_model(open_clip_folders):
    from prometar.build import check_input_config
    from prometar.config import load_cfg

    model = load_clip(str(open_clip_folders["variant"][1]), precision="fp32")
    cfg = load_cfg(None, None, ["INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
                                "MODEL.BACKBONE.NAME", "variant"])
    with pytest.raises(ValueError) as err:
        check_input_config(cfg, model)
    msg = str(err.value)
    assert "INPUT.PIXEL_MEAN is [0.485, 0.456, 0.406] but the model expects [0.5, 0.5, 0.5]" in msg
    assert 'INPUT.PIXEL_MEAN "[0.5, 0.5, 0.5]" INPUT.PIXEL_STD "[0.5, 0.5, 0.5]"' in msg
    check_input_config(load_cfg(None, None, ["INPUT.SIZE", "(32, 32)", "INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]",
                                             "INPUT.PIXEL_STD", "[0.5, 0.5, 0.5]"]), model)
    with pytest.raises(ValueError, match=r"INPUT.SIZE is \(224, 224\) but the model expects \(32, 32\)"):
        check_input_config(load_cfg(None, None, []), model)


def test_tokenizer_and_context_length_come_from_the_model(open_clip_folders):
    model = load_clip(str(open_clip_folders["vit"][1]), precision="fp32")
    pc = PromptedCLIP(model, build_learner("CoOp", model, n_ctx_text=4), NAMES, teacher_templates=None)
    assert text_tower(model).tokenize(["a cat"]).shape == (1, 40)
    assert pc.token_embeds.shape[-1] == 64
    with pytest.raises(ValueError, match="too long for context length 40"):
        pc.set_classnames(["word " * 40])


@pytest.mark.parametrize("precision", ["fp16", "amp"])
def test_open_clip_low_precision_paths_run_and_track_fp32(open_clip_folders, precision):
    folder = str(open_clip_folders["variant"][1])
    low, ref = load_clip(folder, precision=precision), load_clip(folder, precision="fp32")
    assert (low.text.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.float16) == (precision == "fp16")
    models = []
    for model, prec in ((ref, "fp32"), (low, precision)):
        torch.manual_seed(0)
        learner = build_learner("IVLP", model, depth_text=2, depth_vision=2)
        models.append(PromptedCLIP(model, learner, NAMES, precision=prec, amp_dtype="bf16", teacher_templates=None))
    images = torch.randn(2, 3, 32, 32)
    logits = models[1](images)
    assert logits.dtype == torch.float32
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in models[1].prompt_learner.parameters())
    with torch.no_grad():
        assert rel_err(models[1].text_features(models[1].prompts()), models[0].text_features(models[0].prompts())) < 0.05


# ----------------------------------------------------------------------------- exactness per family
@pytest.fixture
def float64_openai_layer_norm(monkeypatch):
    """OpenAI's LayerNorm runs in float32 whatever its input (a float64 model cannot even run it); for the float64
    reference it runs torch's LayerNorm in the input's dtype, the same operation at float64 precision."""
    monkeypatch.setattr(clip.model.LayerNorm, "forward", nn.LayerNorm.forward)


def _family_model(family):
    if family == "openai-vit":
        return build_clip("tiny", seed=5)
    if family == "openai-resnet":
        return build_clip("tiny-rn", seed=5)
    if family.startswith("open_clip-pool-"):  # the other text poolings open_clip offers (causal attention)
        cfg = json.loads(json.dumps(OPEN_CLIP_VIT))
        cfg["text_cfg"].update(pool_type=family.rsplit("-", 1)[1], eos_id=49407)
        return open_clip_model(cfg, seed=5)
    return open_clip_model(OPEN_CLIP_VIT if family == "open_clip-vit" else OPEN_CLIP_VARIANT, seed=5)


FAMILIES = ["openai-vit", "openai-resnet", "open_clip-vit", "open_clip-variant"]


@pytest.mark.parametrize("family", FAMILIES + ["open_clip-pool-eos", "open_clip-pool-first"])
def test_no_prompts_equal_the_librarys_own_encoders(family, float64_openai_layer_norm):
    model = _family_model(family).double()
    with torch.no_grad():
        for p in model.parameters():  # away from the init (zero LayerScale-free residual branches, unit norms)
            p.add_(torch.randn_like(p) * 0.05)
    tower = text_tower(model)
    tokens = tower.tokenize(["a photo of a cat.", "x", "a very long description of a rare red fire truck."])
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        positions = tower.positions(tokens)
        ours = tower.encode(tower.embed(tokens[:, :tower.run_length(positions)]), positions)
        assert rel_err(ours, model.encode_text(tokens)) <= 1e-10
        assert rel_err(vision_tower(model).encode(images), model.encode_image(images)) <= 1e-10
        assert rel_err(vision_tower(model).encode(images, double_diff=True), model.encode_image(images)) <= 1e-10
        templates = ["a photo of a {}.", "itap of the {}."]
        pc = PromptedCLIP(model, build_learner("CoOp", model), NAMES, teacher_templates=templates, precision="fp32")
        ref = sum(model.encode_text(tower.tokenize([t.format(n.replace("_", " ")) for n in NAMES])) for t in templates)
        assert rel_err(pc.teacher_text, ref / ref.norm(dim=-1, keepdim=True)) <= 1e-10
        assert rel_err(pc.image_features(images, None), model.encode_image(images)) <= 1e-10


def _hooked_reference(model, family, tokens, images, text_prompts, vision_prompts):
    """Prompts placed with hooks on the library's own forward: text prompts into positions 1..n of the token
    embeddings and before deeper text blocks; vision prompts appended at `ln_pre`'s input, written into the last n
    tokens before deeper blocks, and (open_clip) removed from the tower's output before its pooling."""
    openai = family.startswith("openai")
    text = model if not hasattr(model, "text") else model.text
    seq_first = openai  # OpenAI's transformers run (L, N, D); open_clip's batch-first (N, L, D)
    handles = []

    def put(x, p, where):
        x = x.clone()
        index = slice(1, 1 + p.shape[0]) if where == "front" else slice(x.shape[0 if seq_first else 1] - p.shape[0], None)
        if seq_first:
            x[index] = p.to(x.dtype)[:, None, :]
        else:
            x[:, index] = p.to(x.dtype)
        return x

    handles.append(text.token_embedding.register_forward_hook(
        lambda m, i, out: torch.cat([out[:, :1], text_prompts[0].to(out.dtype).expand(out.shape[0], -1, -1),
                                     out[:, 1 + text_prompts[0].shape[0]:]], dim=1)))
    for i, block in enumerate(text.transformer.resblocks):
        if 0 < i < len(text_prompts):
            handles.append(block.register_forward_pre_hook(
                lambda m, args, kwargs, p=text_prompts[i]: ((put(args[0], p, "front"),) + args[1:], kwargs),
                with_kwargs=True))
    if vision_prompts:
        visual = model.visual
        n_v = vision_prompts[0].shape[0]
        handles.append(visual.ln_pre.register_forward_pre_hook(
            lambda m, args: (torch.cat([args[0], vision_prompts[0].to(args[0].dtype).expand(args[0].shape[0], -1, -1)],
                                       dim=1),)))
        for i, block in enumerate(visual.transformer.resblocks):
            if 0 < i < len(vision_prompts):
                handles.append(block.register_forward_pre_hook(
                    lambda m, args, kwargs, p=vision_prompts[i]: ((put(args[0], p, "back"),) + args[1:], kwargs),
                    with_kwargs=True))
        if not openai:
            handles.append(visual.transformer.register_forward_hook(lambda m, i, out: out[:, :-n_v]))
    try:
        return model.encode_text(tokens), model.encode_image(images)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_prompted_encoders_equal_a_hooked_library_forward(family, float64_openai_layer_norm):
    model = _family_model(family).double()
    resnet = family == "openai-resnet"
    learner = build_learner("CoOp", model, n_ctx_text=4) if resnet else \
        build_learner("IVLP", model, n_ctx_text=4, n_ctx_vision=3, depth_text=2, depth_vision=2)
    pc = PromptedCLIP(model, learner.double(), NAMES, precision="fp32", teacher_templates=None)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        for p in learner.parameters():
            p.normal_(0, 0.5)
        prompts = pc.prompts()
        text, image = pc.text_features(prompts), pc.image_features(images, prompts)
        tokens = text_tower(model).tokenize([f"{learner.prompt_prefix} {n.replace('_', ' ')}." for n in NAMES])
        ref_text, ref_image = _hooked_reference(model, family, tokens, images, prompts.text, prompts.vision)
        assert rel_err(text, ref_text) <= 1e-10
        assert rel_err(image, ref_image) <= 1e-10
        assert rel_err(pc.text_features(prompts, double_diff=True), ref_text) <= 1e-10
        if not resnet:  # the prompts do change the features (the comparison is not vacuous)
            assert rel_err(image, model.encode_image(images)) > 1e-3


# ----------------------------------------------------------------------------- the step-cost benchmark
def test_step_cost_bench_takes_a_resnet_shape():
    """`bench/step_cost.py --shape RN50 --learner CoOp` builds the shape's CLIP, no vision prompts (ResNet)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "step_cost.py"
    spec = importlib.util.spec_from_file_location("bench_step_cost_backbones", path)
    step_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_cost)
    base = dict(n_cls=3, device="cpu", prec="fp32", amp_dtype="bf16", learner="CoOp", shape="tiny-rn", iters=1,
                warmup=1, templates=1, threads=None, seed=0, flops=True, isolated=False)
    result = step_cost.measure_variant(dict(base, variant="prometar"))
    assert result["depth_vision"] == 0 and result["depth_text"] == 2 and result["gflop"] > 0
    assert "RN50" in step_cost.parse_args(["--shape", "RN50"]).shape


def test_python_api_takes_every_backbone_name(open_clip_folders, openai_files):
    """`prometar.create_model` / `create_step` with an open_clip folder name and an OpenAI ResNet file."""
    import prometar

    for name, learner in ((f"local-dir:{open_clip_folders['variant'][1]}", "IVLP"), (str(openai_files["rn"]), "CoOp")):
        options = dict(depth_text=1, depth_vision=1) if learner == "IVLP" else {}
        model = prometar.create_model(name, NAMES, learner=learner, **options)
        step = prometar.create_step(model, seed=0)
        metrics = step(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
        assert metrics.meta_ran and all(torch.isfinite(p).all() for p in model.prompt_learner.parameters())
