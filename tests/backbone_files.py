"""Small random CLIPs of every supported family, saved in the formats their users have (test helper).

Each model is built with its own library's code and written with that library's writers: OpenAI CLIPs with
`save_clip` (OpenAI's state-dict / TorchScript format), open_clip models with open_clip's `save_for_hf` (the
layout of an open_clip Hugging Face repository: `open_clip_config.json` + `open_clip_model.safetensors` +
`open_clip_pytorch_model.bin`), which is also a local folder, and which `install_in_hf_cache` places in a
Hugging Face cache as `hf_hub_download` would.
"""
from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Dict, List

import torch

#: open_clip ViT with its own text tower (open_clip's `CLIP`): context length 40, not OpenAI's 77.
OPEN_CLIP_VIT = {"embed_dim": 32,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
                 "text_cfg": {"context_length": 40, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
#: open_clip variants (`CustomTextCLIP`): image tower with average pooling, LayerNorm after pooling, no ln_pre,
#: LayerScale (as the CLIPA models); text tower with bidirectional attention, last-token pooling, a biased linear
#: projection, LayerScale (as SigLIP / CLIPA text towers); QuickGELU; its own normalisation.
OPEN_CLIP_VARIANT = {
    "embed_dim": 32, "custom_text": True, "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32, "no_ln_pre": True,
                   "pool_type": "avg", "final_ln_after_pool": True, "ls_init_value": 0.5},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "no_causal_mask": True, "pool_type": "last", "proj_bias": True, "ls_init_value": 0.5,
                 "norm_kwargs": {"eps": 1e-6}}}
VARIANT_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"}


def open_clip_model(cfg: dict, seed: int = 0, preprocess: dict = None) -> torch.nn.Module:
    """A random open_clip model of `cfg` (open_clip's own classes), eval mode, float32."""
    from prometar.open_clip_loader import open_clip

    oc = open_clip()
    cfg = copy.deepcopy(cfg)
    model_class = oc.model.CustomTextCLIP if cfg.pop("custom_text", False) else oc.model.CLIP
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = model_class(**cfg).eval()
    finally:
        torch.random.set_rng_state(state)
    pre = oc.transform.merge_preprocess_dict(oc.transform.PreprocessCfg(), preprocess or {})
    pre["size"] = model.visual.image_size
    oc.model.set_model_preprocess_cfg(model, pre)
    return model


class _NoTokenizerFiles:
    """CLIP-tokenizer models need no tokenizer files in their repository (open_clip builds its SimpleTokenizer)."""

    def save_pretrained(self, folder) -> None:
        pass


def save_open_clip_folder(model: torch.nn.Module, cfg: dict, folder: Path) -> Path:
    """open_clip's own hub writer: config + weights (safetensors and .bin) in `folder`."""
    from prometar._open_clip import push_to_hf_hub

    push_to_hf_hub.save_for_hf(model, _NoTokenizerFiles(), cfg, str(folder), safe_serialization="both")
    return folder


def install_in_hf_cache(folder: Path, cache: Path, repo: str, files: List[str] = None) -> Path:
    """Put a repository's files where the Hugging Face cache keeps them (refs/main + snapshots/<commit>/)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for path in folder.iterdir():
        if files is None or path.name in files:
            shutil.copy(path, snapshot / path.name)
    return snapshot


def family_files(root: Path) -> Dict[str, dict]:
    """One saved tiny model per family: MODEL.BACKBONE.NAME, the extra config opts it needs, and its learner."""
    from prometar.clip_loader import build_clip, save_clip

    root.mkdir(parents=True, exist_ok=True)
    vit = save_clip(build_clip("tiny", seed=0), root / "openai_vit.pt")
    rn = save_clip(build_clip("tiny-rn", seed=0), root / "openai_rn.pt")
    oc_vit = save_open_clip_folder(open_clip_model(OPEN_CLIP_VIT), {**OPEN_CLIP_VIT}, root / "open_clip_vit")
    variant = save_open_clip_folder(open_clip_model(OPEN_CLIP_VARIANT, preprocess=VARIANT_PREPROCESS),
                                    {**OPEN_CLIP_VARIANT}, root / "open_clip_variant")
    norm = ["INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]", "INPUT.PIXEL_STD", "[0.5, 0.5, 0.5]"]
    return {
        "openai-vit": dict(name=str(vit), opts=[], learner="IVLP"),
        "openai-resnet": dict(name=str(rn), opts=[], learner="CoOp"),
        "open_clip-vit": dict(name=f"local-dir:{oc_vit}", opts=[], learner="IVLP"),
        "open_clip-variant": dict(name=str(variant), opts=norm, learner="IVLP"),
    }
