"""Transforms: Dassl's build_transform for the options ProMetaR uses."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from prometar.data import build_transform, make_data_cfg

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def prometar_cfg(**opts):
    base = {
        "INPUT.SIZE": (16, 16),
        "INPUT.INTERPOLATION": "bicubic",
        "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize"),
        "INPUT.PIXEL_MEAN": MEAN,
        "INPUT.PIXEL_STD": STD,
    }
    base.update(opts)
    return make_data_cfg(base)


def image(w=23, h=31, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_train_transform_shape_and_log(capsys):
    tfm = build_transform(prometar_cfg(), is_train=True)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Building transform_train",
        "+ random resized crop (size=(16, 16), scale=(0.08, 1.0))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        f"+ normalization (mean={MEAN}, std={STD})",
    ]
    assert [type(t) for t in tfm.transforms] == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    assert tfm.transforms[0].interpolation == T.InterpolationMode.BICUBIC
    torch.manual_seed(0)
    a = tfm(image())
    torch.manual_seed(0)
    assert a.shape == (3, 16, 16) and torch.equal(a, tfm(image()))  # torch's global RNG drives it


def test_test_transform_equals_hand_built_pipeline(capsys):
    cfg = prometar_cfg(**{"INPUT.SIZE": (20, 20)})
    tfm = build_transform(cfg, is_train=False)
    assert capsys.readouterr().out.splitlines()[:3] == [
        "Building transform_test", "+ resize the smaller edge to 20", "+ 20x20 center crop"]
    ref = T.Compose([T.Resize(20, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop((20, 20)),
                     T.ToTensor(), T.Normalize(MEAN, STD)])
    for img in (image(), image(40, 27, seed=1)):
        out = tfm(img)
        assert out.shape == (3, 20, 20) and torch.equal(out, ref(img))


def test_resize_added_without_random_crop(capsys):
    cfg = prometar_cfg(**{"INPUT.TRANSFORMS": ("random_flip",), "INPUT.INTERPOLATION": "nearest"})
    tfm = build_transform(cfg, is_train=True)
    assert "+ resize to 16x16" in capsys.readouterr().out
    assert isinstance(tfm.transforms[0], T.Resize) and tfm.transforms[0].size == (16, 16)
    assert not any(isinstance(t, T.Normalize) for t in tfm.transforms)
    assert tfm(image()).shape == (3, 16, 16)


def test_bad_names_raise_with_choices():
    with pytest.raises(ValueError, match=r"'random_rotate'.*supported: random_resized_crop"):
        build_transform(prometar_cfg(**{"INPUT.TRANSFORMS": ("random_rotate",)}))
    with pytest.raises(ValueError, match=r"'randaugment' \(a Dassl transform not implemented"):
        build_transform(prometar_cfg(**{"INPUT.TRANSFORMS": ("randaugment",)}))
    with pytest.raises(ValueError, match=r"INTERPOLATION 'lanczos'.*bilinear, bicubic, nearest"):
        build_transform(prometar_cfg(**{"INPUT.INTERPOLATION": "lanczos"}), is_train=False)
