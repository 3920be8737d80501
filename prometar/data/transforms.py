"""Image transforms reproducing Dassl's `build_transform` for the options CoOp-family trainers use
with the same printed lines."""
from __future__ import annotations

from typing import Any, Sequence

from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

# Supported here (the rest of Dassl's list is recognised and rejected with a clear message).
SUPPORTED_TRANSFORMS = ("random_resized_crop", "random_flip", "normalize", "random_crop", "center_crop")
OTHER_DASSL_TRANSFORMS = (
    "random_translation", "imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment",
    "randaugment_fixmatch", "randaugment2", "gaussian_noise", "colorjitter", "randomgrayscale",
    "gaussian_blur", "instance_norm", "cutout",
)


def interpolation_mode(name: str) -> InterpolationMode:
    """INPUT.INTERPOLATION -> torchvision mode (error naming the value and the choices)."""
    if name not in INTERPOLATION_MODES:
        raise ValueError(f"INPUT.INTERPOLATION {name!r} is not supported; choose one of {', '.join(INTERPOLATION_MODES)}")
    return INTERPOLATION_MODES[name]


def check_transform_names(choices: Sequence[str]) -> None:
    """Raise ValueError naming any unknown INPUT.TRANSFORMS entry and the supported list."""
    for choice in choices:
        if choice in SUPPORTED_TRANSFORMS:
            continue
        where = " (a Dassl transform not implemented in prometar)" if choice in OTHER_DASSL_TRANSFORMS else ""
        raise ValueError(
            f"INPUT.TRANSFORMS: unknown transform {choice!r}{where}; supported: {', '.join(SUPPORTED_TRANSFORMS)}"
        )


def build_transform(cfg: Any, is_train: bool = True, choices: Sequence[str] | None = None) -> Compose | None:
    """Train or test transform from cfg.INPUT (SIZE, INTERPOLATION, TRANSFORMS, PIXEL_MEAN/STD, RRCROP_SCALE).

    Train: [resize to SIZE if no random crop] [random resized crop] [random crop] [center crop]
    [random flip] to-tensor [normalize]. Test: resize shorter side to max(SIZE), center crop SIZE,
    to-tensor [normalize]. Returns None (and prints a note) if INPUT.NO_TRANSFORM.
    """
    inp = cfg.INPUT
    if inp.get("NO_TRANSFORM", False):
        print("Note: no transform is applied!")
        return None
    choices = list(inp.TRANSFORMS if choices is None else choices)
    check_transform_names(choices)
    interp = interpolation_mode(inp.INTERPOLATION)
    size = inp.SIZE
    target_size = f"{size[0]}x{size[1]}"
    normalize = Normalize(mean=inp.PIXEL_MEAN, std=inp.PIXEL_STD)
    tfms = []
    if is_train:
        print("Building transform_train")
        if "random_crop" not in choices and "random_resized_crop" not in choices:
            print(f"+ resize to {target_size}")
            tfms.append(Resize(size, interpolation=interp))
        if "random_crop" in choices:
            padding = inp.get("CROP_PADDING", 4)
            print(f"+ random crop (padding = {padding})")
            tfms.append(RandomCrop(size, padding=padding))
        if "random_resized_crop" in choices:
            scale = inp.get("RRCROP_SCALE", (0.08, 1.0))
            print(f"+ random resized crop (size={size}, scale={scale})")
            tfms.append(RandomResizedCrop(size, scale=scale, interpolation=interp))
        if "center_crop" in choices:
            print(f"+ center crop (size={size})")
            tfms.append(CenterCrop(size))
        if "random_flip" in choices:
            print("+ random flip")
            tfms.append(RandomHorizontalFlip())
    else:
        print("Building transform_test")
        print(f"+ resize the smaller edge to {max(size)}")
        tfms.append(Resize(max(size), interpolation=interp))
        print(f"+ {target_size} center crop")
        tfms.append(CenterCrop(size))
    print("+ to torch tensor of range [0, 1]")
    tfms.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})")
        tfms.append(normalize)
    return Compose(tfms)
