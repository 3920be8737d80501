"""open_clip models, offline-first, through the optional `open_clip_torch` package.

Names (`MODEL.BACKBONE.NAME`, or `prometar.clip_loader.load_clip`):

* `open_clip:ARCH/PRETRAINED`: an open_clip architecture and one of its pretrained tags
  (`open_clip:ViT-B-16/laion2b_s34b_b88k`); the weights file is looked up where open_clip downloads it: the
  Hugging Face cache for tags hosted there, else `$PROMETAR_CLIP_CACHE` / `~/.cache/clip` for tags with a URL;
* `open_clip:ARCH/FILE`: the architecture with a weights file (any path; open_clip's checkpoint formats);
* `hf-hub:ORG/NAME`: open_clip's own Hugging Face form (a repository holding `open_clip_config.json` and
  `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`), read from the Hugging Face cache;
* `local-dir:FOLDER`, or a folder path: the same two files in a local folder.

Nothing is downloaded unless allowed (`PROMETAR_ALLOW_DOWNLOAD=1`); a missing file raises `ClipLoadError`
naming the exact cache path and what to download. A tag trained with QuickGELU builds the architecture with
QuickGELU (open_clip itself only warns about the mismatch). open_clip is read from its installed folder under a
private name (`prometar._open_clip`), never through `import open_clip`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from .backbone import INFO_ATTR, BackboneInfo, ClipLoadError, clip_cache_dir

__all__ = ["open_clip", "is_open_clip_name", "OpenClipSpec", "resolve_open_clip", "load_open_clip",
           "hf_cache_dir", "WEIGHT_NAMES", "CONFIG_NAME"]

OPEN_CLIP_PREFIX = "open_clip:"
HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
#: open_clip's weight files in a Hugging Face repository or folder, in the order open_clip prefers them.
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CONFIG_NAME = "open_clip_config.json"
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")


def open_clip():
    """open_clip (pip `open_clip_torch`), imported from its installed folder as `prometar._open_clip`.

    Raises:
        ImportError: the package is not installed (the message says how to install the extra).
    """
    from . import _open_clip

    return _open_clip


def is_open_clip_name(text: str) -> bool:
    """True for the open_clip forms: `open_clip:...`, `hf-hub:...`, `local-dir:...` or an existing folder."""
    return text.startswith((OPEN_CLIP_PREFIX, HF_HUB_PREFIX, LOCAL_DIR_PREFIX)) or os.path.isdir(os.path.expanduser(text))


@dataclass(frozen=True)
class OpenClipSpec:
    """A resolved open_clip name: where the weights (and, for a repository or folder, the config) are."""

    name: str
    arch: Optional[str]                    # a built-in open_clip architecture, or None (config file)
    weights: Path
    config: Optional[Path] = None          # open_clip_config.json of a hub repository or folder
    pretrained_cfg: dict = field(default_factory=dict)  # the pretrained tag's entry (mean, std, quick_gelu)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (read at each call)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return (base / "huggingface" / "hub").expanduser()


def _hf_expected(repo: str, filename: str, cache: Path) -> str:
    folder = cache / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / "main"
    revision = ref.read_text().strip() if ref.is_file() else "<revision>"
    return str(folder / "snapshots" / revision / filename)


def _hf_find(repo: str, names: List[str], allow_download: bool, what: str) -> Path:
    """The first of `names` in the Hugging Face cache (downloaded first when allowed), else ClipLoadError."""
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    for filename in names:
        found = try_to_load_from_cache(repo, filename, cache_dir=str(cache))
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    errors = []
    if allow_download:
        from huggingface_hub import hf_hub_download

        for filename in names:
            try:
                return Path(hf_hub_download(repo, filename, cache_dir=str(cache)))
            except Exception as exc:  # the next name, then the error below
                errors.append(f"{filename}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    tried = " or ".join(_hf_expected(repo, n, cache) for n in names)
    urls = " or ".join(f"https://huggingface.co/{repo}/resolve/main/{n}" for n in names)
    failed = f" Download failed: {'; '.join(errors)}." if errors else ""
    raise ClipLoadError(
        f"{what} not found offline: tried {tried} (the Hugging Face cache; HF_HUB_CACHE or HF_HOME move it).{failed} "
        f"On a machine with network run `hf download {repo} {names[0]}` with the same cache (or fetch {urls} and "
        f"save it anywhere, then use open_clip:ARCH/<path to the file>), or allow downloading with "
        f"PROMETAR_ALLOW_DOWNLOAD=1.")


def _tag_candidates(hf_hub: str) -> Tuple[str, List[str]]:
    """Repository and file names of a tag's `hf_hub` entry (`org/name/` means open_clip's default names)."""
    repo, filename = os.path.split(hf_hub)
    if not filename:
        return repo, list(WEIGHT_NAMES)
    names = [filename]
    if filename.endswith((".bin", ".pth")) and filename != WEIGHT_NAMES[1]:
        names.insert(0, filename[:-4] + ".safetensors")
    elif filename == WEIGHT_NAMES[1]:
        names.insert(0, WEIGHT_NAMES[0])
    return repo, names


def _tag_weights(arch: str, tag: str, cfg: dict, allow_download: bool) -> Path:
    name = f"open_clip:{arch}/{tag}"
    if cfg.get("hf_hub"):
        repo, names = _tag_candidates(cfg["hf_hub"])
        return _hf_find(repo, names, allow_download, f"open_clip weights for {name}")
    url = cfg.get("url", "")
    if not url:
        raise ClipLoadError(f"open_clip's entry for {name} names no download location; use open_clip:{arch}/<FILE>")
    path = clip_cache_dir() / os.path.basename(url)
    if path.is_file():
        return path
    if allow_download:
        return Path(open_clip().pretrained.download_pretrained_from_url(url, cache_dir=str(path.parent)))
    raise ClipLoadError(f"open_clip weights for {name} not found offline: tried {path}. Download {url} to that path "
                        f"(or set $PROMETAR_CLIP_CACHE to the folder holding {path.name}, use open_clip:{arch}/<FILE>, "
                        f"or allow downloading with PROMETAR_ALLOW_DOWNLOAD=1).")


def _looks_like_file(rest: str) -> bool:
    return os.sep in rest or "/" in rest or rest.endswith(_WEIGHT_SUFFIXES) or os.path.isfile(os.path.expanduser(rest))


def _resolve_arch(name: str, allow_download: bool) -> OpenClipSpec:
    """`open_clip:ARCH/PRETRAINED` or `open_clip:ARCH/FILE`."""
    oc = open_clip()
    arch, _, rest = name[len(OPEN_CLIP_PREFIX):].partition("/")
    if oc.factory.get_model_config(arch) is None:
        near = [m for m in oc.factory.list_models() if arch.lower().split("-")[0] in m.lower()][:12]
        raise ClipLoadError(f"{name!r}: {arch!r} is not an open_clip architecture (similar: {', '.join(near) or 'none'}; "
                            f"all: open_clip.list_models())")
    tags = oc.pretrained.list_pretrained_tags_by_model(arch)
    if not rest:
        raise ClipLoadError(f"{name!r} names no weights: use open_clip:{arch}/PRETRAINED with a tag of "
                            f"{arch} ({', '.join(tags) or 'none'}) or open_clip:{arch}/<path to a weights file>")
    if _looks_like_file(rest):
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ClipLoadError(f"{name!r}: weights file not found: tried {path.resolve()}")
        return OpenClipSpec(name, arch, path)
    cfg = oc.pretrained.get_pretrained_cfg(arch, rest)
    if not cfg:
        raise ClipLoadError(f"{name!r}: {rest!r} is neither a pretrained tag of {arch} ({', '.join(tags) or 'none'}) "
                            f"nor an existing file")
    return OpenClipSpec(name, arch, _tag_weights(arch, rest, cfg, allow_download), pretrained_cfg=dict(cfg))


def _resolve_folder(name: str, folder: Path) -> OpenClipSpec:
    config = folder / CONFIG_NAME
    if not folder.is_dir():
        raise ClipLoadError(f"{name!r}: folder not found: tried {folder.resolve()}")
    if not config.is_file():
        raise ClipLoadError(f"{name!r}: {config} is missing: an open_clip folder holds {CONFIG_NAME} and "
                            f"{' or '.join(WEIGHT_NAMES)}")
    for weights in WEIGHT_NAMES:
        if (folder / weights).is_file():
            return OpenClipSpec(name, None, folder / weights, config)
    raise ClipLoadError(f"{name!r}: no weights in {folder}: expected {' or '.join(str(folder / w) for w in WEIGHT_NAMES)}")


def resolve_open_clip(name: str, allow_download: bool = False) -> OpenClipSpec:
    """Find the files of an open_clip name (see the module docstring); ClipLoadError naming the paths tried."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return _resolve_arch(name, allow_download)
    if name.startswith(HF_HUB_PREFIX):
        repo = name[len(HF_HUB_PREFIX):].strip("/")
        config = _hf_find(repo, [CONFIG_NAME], allow_download, f"the open_clip config of {name}")
        weights = _hf_find(repo, list(WEIGHT_NAMES), allow_download, f"open_clip weights for {name}")
        return OpenClipSpec(name, None, weights, config)
    folder = name[len(LOCAL_DIR_PREFIX):] if name.startswith(LOCAL_DIR_PREFIX) else name
    return _resolve_folder(name, Path(folder).expanduser())


def _model_config(spec: OpenClipSpec) -> Tuple[dict, dict]:
    """(model config, preprocess overrides) of a resolved name."""
    if spec.arch is not None:
        cfg = json.loads(json.dumps(open_clip().factory.get_model_config(spec.arch)))  # a deep copy
        if spec.pretrained_cfg.get("quick_gelu"):
            cfg["quick_gelu"] = True  # the activation the tag was trained with
        return cfg, spec.pretrained_cfg
    try:
        data = json.loads(spec.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipLoadError(f"could not read {spec.config}: {type(exc).__name__}: {exc}") from exc
    if "model_cfg" not in data:
        raise ClipLoadError(f"{spec.config} has no 'model_cfg' entry (keys: {', '.join(data) or 'none'}): not an "
                            f"open_clip config")
    return data["model_cfg"], data.get("preprocess_cfg", {})


def _tokenizer_of(cfg: dict, arch: Optional[str]) -> Tuple[str, tuple]:
    text = cfg.get("text_cfg", {})
    if text.get("hf_tokenizer_name"):
        return f"HFTokenizer({text['hf_tokenizer_name']})", ()
    if arch is not None and "siglip" in arch.lower():
        return "SigLipTokenizer", ()
    return "clip-bpe", tuple(sorted(text.get("tokenizer_kwargs", {}).items()))


def _instantiate(cfg: dict, spec: OpenClipSpec) -> torch.nn.Module:
    """The open_clip model class the config asks for, randomly initialised (nothing downloaded)."""
    oc = open_clip()
    cfg = dict(cfg)
    if "multimodal_cfg" in cfg:
        raise ClipLoadError(f"{spec.name!r} is a CoCa model (multimodal_cfg): prometar prompts contrastive CLIPs "
                            f"(open_clip's CLIP and CustomTextCLIP) only")
    text, vision = dict(cfg.get("text_cfg", {})), dict(cfg.get("vision_cfg", {}))
    if "hf_model_name" in text:
        text["hf_model_pretrained"] = False  # the CLIP checkpoint holds the text tower
    if "timm_model_name" in vision:
        vision["timm_model_pretrained"] = False
    cfg.update(text_cfg=text, vision_cfg=vision)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in text
    model_class = oc.model.CustomTextCLIP if custom else oc.model.CLIP
    try:
        return model_class(**cfg)
    except Exception as exc:
        raise ClipLoadError(f"could not build the open_clip model of {spec.name!r} ({model_class.__name__}): "
                            f"{type(exc).__name__}: {exc}") from exc


def _info(model: torch.nn.Module, spec: OpenClipSpec, cfg: dict, preprocess: dict) -> BackboneInfo:
    oc = open_clip()
    merged = oc.transform.merge_preprocess_dict(oc.transform.PreprocessCfg(), preprocess)
    size = getattr(model.visual, "image_size", merged["size"])
    size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
    merged["size"] = size
    oc.model.set_model_preprocess_cfg(model, merged)
    tokenizer, kwargs = _tokenizer_of(cfg, spec.arch)
    text = getattr(model, "text", model)
    return BackboneInfo(name=spec.name, family="open_clip", image_size=size, mean=tuple(merged["mean"]),
                        std=tuple(merged["std"]), interpolation=str(merged["interpolation"]),
                        context_length=int(text.context_length), tokenizer=tokenizer, tokenizer_kwargs=kwargs)


def _half_weights(model: torch.nn.Module) -> None:
    """fp16 as OpenAI's and open_clip's own fp16 modes keep it: convolutions, linear layers, attention input
    projections and the projection matrices in half, norms and embeddings in float32 (a timm image tower all in
    half, as open_clip does). Written here because open_clip's `convert_weights_to_lp` fails on a text tower whose
    projection is a biased linear layer."""
    nn = torch.nn
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.half()
        elif isinstance(module, nn.MultiheadAttention):
            for name in ("in_proj_weight", "in_proj_bias"):
                if getattr(module, name, None) is not None:
                    getattr(module, name).data = getattr(module, name).data.half()
    for owner, name in ((getattr(model, "text", model), "text_projection"), (model.visual, "proj")):
        value = getattr(owner, name, None)
        if isinstance(value, nn.Parameter):
            value.data = value.data.half()
    if type(model.visual).__name__ == "TimmModel":
        model.visual.half()


def load_open_clip(name: str, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                   allow_download: bool = False) -> torch.nn.Module:
    """Load a frozen, eval-mode open_clip model (see the module docstring) with its `BackboneInfo` attached.

    precision: "fp16" keeps linear, convolution and attention weights and the projections in half (`_half_weights`);
    "fp32" and "amp" keep float32.
    """
    oc = open_clip()
    spec = resolve_open_clip(name, allow_download=allow_download)
    cfg, preprocess = _model_config(spec)
    model = _instantiate(cfg, spec)
    try:
        oc.factory.load_checkpoint(model, str(spec.weights), strict=True)
    except Exception as exc:
        raise ClipLoadError(f"could not load open_clip weights {spec.weights} into the model of {name!r}: "
                            f"{type(exc).__name__}: {str(exc)[:600]}") from exc
    info = _info(model, spec, cfg, preprocess)
    if precision == "fp16":
        _half_weights(model)
    model.requires_grad_(False)
    setattr(model, INFO_ATTR, info)
    return model.to(device).eval()
