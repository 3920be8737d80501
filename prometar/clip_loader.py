"""Resolve and load CLIP weights offline-first; build small CLIPs for tests.

`load_clip("ViT-B/16")` (any OpenAI name: RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14,
ViT-L/14@336px) looks for OpenAI's file name (`ViT-B-16.pt`) in the cache folder (`$PROMETAR_CLIP_CACHE`, else
`~/.cache/clip`, where `clip.load` also puts it); `load_clip(path)` reads an OpenAI TorchScript archive or a plain
state-dict file (ViT or ResNet). open_clip models (`open_clip:ARCH/PRETRAINED`, `open_clip:ARCH/FILE`,
`hf-hub:ORG/NAME`, `local-dir:FOLDER` or a folder) are loaded by `prometar.open_clip_loader`. Nothing is downloaded
unless `allow_download=True` (or `PROMETAR_ALLOW_DOWNLOAD=1`). An OpenAI model is the unmodified
`clip.model.CLIP` of OpenAI's `clip` package, read through `openai_clip()` (never through `import clip`, which
inside a MaPLe / PromptSRC / official ProMetaR checkout gives that repository's modified fork).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from .backbone import CACHE_ENV, DOWNLOAD_ENV, INFO_ATTR, BackboneInfo, ClipLoadError, clip_cache_dir
from .io import atomic_write
from .open_clip_loader import is_open_clip_name, load_open_clip, resolve_open_clip


def openai_clip():
    """OpenAI's `clip` package (pip `openai-clip`), whatever `import clip` resolves to in the running program.

    It is imported from its installed folder under the private name `prometar._openai_clip`, so a host
    repository's own `clip/` fork keeps serving the host's code and `sys.modules['clip']` is left alone.
    Every use of CLIP in this project goes through this function.

    Raises:
        ImportError: OpenAI's package is not installed (the message says how to install it).
    """
    from . import _openai_clip

    return _openai_clip


clip = openai_clip()
CLIP = clip.model.CLIP
build_model = clip.model.build_model
convert_weights = clip.model.convert_weights

__all__ = [
    "openai_clip",
    "CLIP_SHAPES",
    "BUNDLED_MODELS",
    "ClipLoadError",
    "clip_cache_dir",
    "resolve_clip_path",
    "load_clip",
    "build_clip",
    "save_clip",
    "check_complete_clip",
    "clip_architecture",
]


#: Architecture hyper-parameters of OpenAI's CLIPs, by OpenAI's model names (and small shapes for tests).
CLIP_SHAPES: Dict[str, dict] = {
    "ViT-B/16": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, context_length=77, vocab_size=49408,
                     transformer_width=512, transformer_heads=8, transformer_layers=12),
    "ViT-L/14": dict(embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024,
                     vision_patch_size=14, context_length=77, vocab_size=49408,
                     transformer_width=768, transformer_heads=12, transformer_layers=12),
    # Small shapes for tests: real tokenizer vocabulary, tiny widths. OpenAI's loader derives the head count
    # as width // 64 on both towers, so widths are multiples of 64.
    "tiny": dict(embed_dim=32, image_resolution=32, vision_layers=3, vision_width=64,
                 vision_patch_size=8, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=3),
    "small": dict(embed_dim=64, image_resolution=32, vision_layers=3, vision_width=128,
                  vision_patch_size=8, context_length=77, vocab_size=49408,
                  transformer_width=128, transformer_heads=2, transformer_layers=3),
}

CLIP_SHAPES["ViT-B/32"] = dict(CLIP_SHAPES["ViT-B/16"], vision_patch_size=32)
CLIP_SHAPES["ViT-L/14@336px"] = dict(CLIP_SHAPES["ViT-L/14"], image_resolution=336)


def _resnet_shape(embed_dim: int, resolution: int, layers: tuple, width: int, text_width: int) -> dict:
    return dict(embed_dim=embed_dim, image_resolution=resolution, vision_layers=layers, vision_width=width,
                vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=text_width,
                transformer_heads=text_width // 64, transformer_layers=12)


CLIP_SHAPES.update({
    "RN50": _resnet_shape(1024, 224, (3, 4, 6, 3), 64, 512),
    "RN101": _resnet_shape(512, 224, (3, 4, 23, 3), 64, 512),
    "RN50x4": _resnet_shape(640, 288, (4, 6, 10, 6), 80, 640),
    "RN50x16": _resnet_shape(768, 384, (6, 8, 18, 8), 96, 768),
    "RN50x64": _resnet_shape(1024, 448, (3, 15, 36, 10), 128, 1024),
    # A small ResNet CLIP for tests: one bottleneck per stage, 32 px (a 1 x 1 grid for the attention pool).
    "tiny-rn": dict(_resnet_shape(32, 32, (1, 1, 1, 1), 8, 64), transformer_layers=2),
})

#: Models shipped inside the package (see `prometar/world.py`).
BUNDLED_MODELS = {"prometar-world": "world_clip.pt"}


def _openai_file_name(name: str) -> str:
    url = clip.clip._MODELS[name]
    return os.path.basename(url)


def _download_allowed(allow_download: Optional[bool]) -> bool:
    if allow_download is None:
        return os.environ.get(DOWNLOAD_ENV, "") not in ("", "0", "false", "False")
    return bool(allow_download)


def resolve_clip_path(name_or_path: Union[str, os.PathLike], cache_dir: Optional[Union[str, os.PathLike]] = None,
                      allow_download: Optional[bool] = None) -> Path:
    """Return the weights file for an OpenAI model name, a bundled model name, an open_clip name or a path.

    Raises `ClipLoadError` naming every path tried and how to provide the file.
    """
    text = str(name_or_path)
    allow_download = _download_allowed(allow_download)
    if is_open_clip_name(text):
        return resolve_open_clip(text, allow_download=allow_download).weights
    if text in BUNDLED_MODELS:
        path = Path(__file__).parent / "assets" / BUNDLED_MODELS[text]
        if not path.is_file():
            raise ClipLoadError(f"bundled CLIP {text!r} is missing from the installed package: expected {path}. "
                                f"Reinstall prometar, or rebuild it with `python -m prometar.world pretrain`.")
        return path
    if text in clip.clip._MODELS:
        folder = Path(cache_dir).expanduser() if cache_dir else clip_cache_dir()
        path = folder / _openai_file_name(text)
        if path.is_file():
            return path
        url = clip.clip._MODELS[text]
        if allow_download:
            folder.mkdir(parents=True, exist_ok=True)
            return Path(clip.clip._download(url, str(folder)))
        raise ClipLoadError(
            f"CLIP weights for {text!r} not found: tried {path}. Download {url} to that path "
            f"(or set ${CACHE_ENV} to the folder holding {path.name}, pass a path to a .pt file as "
            f"MODEL.BACKBONE.NAME, or allow downloading with {DOWNLOAD_ENV}=1).")
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join(list(clip.clip._MODELS) + list(BUNDLED_MODELS))
    raise ClipLoadError(f"CLIP weights not found: {text!r} is neither an existing file (tried {path.resolve()}) "
                        f"nor a known model name ({known}; open_clip models: open_clip:ARCH/PRETRAINED, "
                        f"open_clip:ARCH/FILE, hf-hub:ORG/NAME, local-dir:FOLDER).")


def _is_torchscript(path: Path) -> bool:
    """OpenAI's released files are TorchScript archives: zips holding `constants.pkl` and `code/`."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_state_dict(path: Path) -> dict:
    errors = []
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated but is how OpenAI's files are read
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            errors.append(f"as TorchScript: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    else:
        errors.append("not a TorchScript archive")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        errors.append(f"as a state dict: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise ClipLoadError(f"could not read CLIP weights from {path}: the file is neither an OpenAI TorchScript "
                            f"archive nor a torch state dict ({'; '.join(errors)}). Re-download or re-create it.")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise ClipLoadError(f"could not read CLIP weights from {path}: it holds a {type(obj).__name__} without "
                            f"CLIP keys (expected e.g. 'token_embedding.weight', 'visual.conv1.weight').")
    return obj


#: Entries of OpenAI's state dicts that are not tensors of the model.
_META_KEYS = ("input_resolution", "context_length", "vocab_size")
_BLOCK = re.compile(r"^((?:visual\.)?transformer\.resblocks\.\d+|visual\.layer\d\.\d+)\.")


def _summarize_keys(keys, limit: int = 8) -> str:
    """`transformer.resblocks.2.* (12 keys), ln_final.weight, ...`: block keys grouped, at most `limit` items."""
    groups: Dict[str, int] = {}
    for key in sorted(keys, key=lambda k: [int(t) if t.isdigit() else t for t in k.split(".")]):
        match = _BLOCK.match(key)
        label = f"{match.group(1)}.*" if match else key
        groups[label] = groups.get(label, 0) + 1
    items = [f"{label} ({n} keys)" if n > 1 else label for label, n in groups.items()]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _n(keys) -> str:
    return f"{len(keys)} key" + ("" if len(keys) == 1 else "s")


def _depth(state: dict, prefix: str) -> int:
    """1 + the highest block index under `prefix` (so a gap shows up as missing keys, not as a shallower model)."""
    indices = [int(k[len(prefix):].split(".")[0]) for k in state
               if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()]
    return max(indices) + 1 if indices else 0


def _vision_architecture(state: dict) -> dict:
    """Vision keyword arguments of `clip.model.CLIP`: a ViT when `visual.proj` is present, else a ResNet."""
    if "visual.proj" in state or ("visual.conv1.weight" in state and "visual.layer1.0.conv1.weight" not in state):
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return dict(image_resolution=conv.shape[-1] * grid, vision_layers=_depth(state, "visual.transformer.resblocks."),
                    vision_width=conv.shape[0], vision_patch_size=conv.shape[-1])
    output_width = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    return dict(image_resolution=output_width * 32, vision_layers=tuple(_depth(state, f"visual.layer{b}.") for b in (1, 2, 3, 4)),
                vision_width=state["visual.layer1.0.conv1.weight"].shape[0], vision_patch_size=None)


def clip_architecture(state: dict) -> dict:
    """The `clip.model.CLIP` keyword arguments a ViT or ResNet CLIP state dict implies (as OpenAI's `build_model`
    derives them, except that depths are the highest block index + 1, so a missing block is reported, not dropped).

    Raises `KeyError` naming an absent key that the derivation needs."""
    width = state["ln_final.weight"].shape[0]
    return dict(embed_dim=state["text_projection"].shape[1], **_vision_architecture(state),
                context_length=state["positional_embedding"].shape[0], vocab_size=state["token_embedding.weight"].shape[0],
                transformer_width=width, transformer_heads=width // 64,
                transformer_layers=_depth(state, "transformer.resblocks."))


def _expected_text_layers(vision_layers) -> Optional[int]:
    """Text depth of a complete CLIP with this vision depth: OpenAI's ViT-L/14 pairs 24 vision blocks with 12 text
    blocks; every other OpenAI ViT CLIP, and every ViT CLIP this project builds, has towers of equal depth. None for
    a ResNet (its text depth is not implied by the vision tower)."""
    if isinstance(vision_layers, (tuple, list)):
        return None
    return 12 if vision_layers == 24 else vision_layers


def _depth_notes(arch: dict) -> tuple:
    """(architecture of the complete CLIP, notes) when one tower of a ViT CLIP is shallower than the other implies."""
    full, notes = dict(arch), []
    text_expected = _expected_text_layers(arch["vision_layers"])
    if text_expected is None:
        return full, notes
    if arch["transformer_layers"] < text_expected:
        full["transformer_layers"] = text_expected
        notes.append(f"its text tower has {arch['transformer_layers']} blocks but its {arch['vision_layers']}-block "
                     f"vision tower implies {text_expected}")
    elif arch["transformer_layers"] > text_expected and arch["vision_layers"] != 24:
        full["vision_layers"] = arch["transformer_layers"]
        notes.append(f"its vision tower has {arch['vision_layers']} blocks but its text tower has "
                     f"{arch['transformer_layers']} (OpenAI's ViT CLIPs have towers of equal depth, or 24 vision "
                     f"and 12 text blocks)")
    return full, notes


def check_complete_clip(state: dict, path: Union[str, os.PathLike] = "<state dict>") -> dict:
    """Refuse a state dict that is not a complete OpenAI CLIP (ViT or ResNet); return its architecture
    (`clip_architecture`).

    Compares the keys and shapes with those of the CLIP the state dict implies, and for a ViT the depth of the two
    towers with each other (a CLIP whose last text block was removed would otherwise load as a shallower
    model). Raises `ClipLoadError` naming `path` and the missing, unexpected and misshapen keys.
    """
    try:
        arch = clip_architecture(state)
    except KeyError as exc:
        raise ClipLoadError(f"{path} is not a complete OpenAI CLIP state dict: key {exc.args[0]!r} is missing "
                            f"(keys present: {_summarize_keys(state)}). Re-create or re-download the file.") from None
    full, notes = _depth_notes(arch)
    with torch.device("meta"):
        reference = CLIP(**full).state_dict()
    present = {k: v for k, v in state.items() if k not in _META_KEYS}
    missing = [k for k in reference if k not in present]
    unexpected = [k for k in present if k not in reference]
    misshapen = [f"{k} {tuple(present[k].shape)} (expected {tuple(reference[k].shape)})" for k in reference
                 if k in present and tuple(getattr(present[k], "shape", ())) != tuple(reference[k].shape)]
    if missing or unexpected or misshapen:
        parts = notes[:]
        if missing:
            parts.append(f"missing {_n(missing)}: {_summarize_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {_n(unexpected)}: {_summarize_keys(unexpected)}")
        if misshapen:
            parts.append(f"misshapen: {', '.join(misshapen[:8])}" + (" ..." if len(misshapen) > 8 else ""))
        raise ClipLoadError(f"{path} is not a complete OpenAI CLIP state dict: {'; '.join(parts)}. Re-create or "
                            f"re-download the file (prometar loads only unmodified OpenAI CLIPs).")
    return arch


def openai_backbone_info(model: CLIP, name: str) -> BackboneInfo:
    """`BackboneInfo` of an OpenAI CLIP: its input resolution, OpenAI's normalisation and tokenizer."""
    res = int(model.visual.input_resolution)
    return BackboneInfo(name=name, family="openai", image_size=(res, res), context_length=int(model.context_length))


def load_clip(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
              precision: str = "fp16", cache_dir: Optional[Union[str, os.PathLike]] = None,
              allow_download: Optional[bool] = None) -> torch.nn.Module:
    """Load a frozen, eval-mode CLIP: OpenAI's `clip.model.CLIP` for OpenAI names, files and bundled models, an
    open_clip model for open_clip names (`prometar.open_clip_loader`). The model carries a `BackboneInfo`
    (`prometar.backbone`): input size, normalisation, tokenizer.

    precision: "fp16" keeps OpenAI's half weights (linear, conv, attention, projections); "fp32" and "amp"
    convert the whole model to float32. All parameters have `requires_grad=False`.
    """
    if precision not in ("fp16", "fp32", "amp"):
        raise ValueError(f"precision must be one of fp16, fp32, amp; got {precision!r}")
    if is_open_clip_name(str(name_or_path)):
        return load_open_clip(str(name_or_path), device=device, precision=precision,
                              allow_download=_download_allowed(allow_download))
    path = resolve_clip_path(name_or_path, cache_dir=cache_dir, allow_download=allow_download)
    state = _read_state_dict(path)
    check_complete_clip(state, path)
    try:
        model = build_model(dict(state))
    except Exception as exc:
        raise ClipLoadError(f"could not build CLIP from {path}: {type(exc).__name__}: {exc}") from exc
    if precision != "fp16":
        model = model.float()
    model.requires_grad_(False)
    setattr(model, INFO_ATTR, openai_backbone_info(model, str(name_or_path)))
    return model.to(device).eval()


def _check_shape(kwargs: dict) -> None:
    """Refuse shapes whose saved file OpenAI's `build_model` would rebuild differently."""
    resnet = isinstance(kwargs["vision_layers"], (tuple, list))
    vision_unit = 2 if resnet else 64  # ResNet attention-pool heads: width * 32 // 64; ViT heads: width // 64
    if kwargs["vision_width"] % vision_unit or kwargs["transformer_width"] % 64:
        raise ValueError(f"vision_width={kwargs['vision_width']} must be a multiple of {vision_unit} and "
                         f"transformer_width={kwargs['transformer_width']} of 64: OpenAI's loader derives the heads")
    if kwargs["transformer_heads"] != kwargs["transformer_width"] // 64:
        raise ValueError(f"transformer_heads={kwargs['transformer_heads']} must equal transformer_width // 64 "
                         f"= {kwargs['transformer_width'] // 64} for the saved file to load with OpenAI's builder")
    expected = _expected_text_layers(kwargs["vision_layers"])
    if expected is not None and kwargs["transformer_layers"] != expected:
        raise ValueError(f"transformer_layers={kwargs['transformer_layers']} with vision_layers={kwargs['vision_layers']}: "
                         f"load_clip accepts only OpenAI's tower depths (equal, or 24 vision / 12 text blocks)")


def build_clip(shape: Union[str, dict] = "tiny", seed: int = 0, **overrides) -> CLIP:
    """A randomly initialised `clip.model.CLIP` of a named shape (see `CLIP_SHAPES`) or explicit kwargs, fp32.
    A tuple `vision_layers` gives OpenAI's ResNet image tower (`ModifiedResNet`)."""
    kwargs = dict(CLIP_SHAPES[shape]) if isinstance(shape, str) else dict(shape)
    kwargs.update(overrides)
    _check_shape(kwargs)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CLIP(**kwargs)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def save_clip(model: CLIP, path: Union[str, os.PathLike], fp16: bool = True, jit: bool = False) -> Path:
    """Save a CLIP in OpenAI's format: a state dict (default) or a traced TorchScript archive (`jit=True`).

    With fp16, the weights OpenAI stores in half precision are converted as `clip.model.convert_weights` does.
    """
    import copy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).float().eval()
    if jit:
        res = model.visual.input_resolution
        image = torch.zeros(1, 3, res, res)
        text = clip.tokenize(["a photo"])
        if fp16:
            convert_weights(model)
            image = image.half()
        traced = torch.jit.trace(model, (image, text), check_trace=False)
        traced.save(str(path))
    else:
        if fp16:
            convert_weights(model)
        state = model.state_dict()
        state.update({"input_resolution": torch.tensor(model.visual.input_resolution),
                      "context_length": torch.tensor(model.context_length),
                      "vocab_size": torch.tensor(model.vocab_size)})
        atomic_write(path, lambda f: torch.save(state, f))
    return path
