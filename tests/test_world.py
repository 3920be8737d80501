"""PrometarWorld: deterministic benchmark generation, the shipped CLIP, zero-shot difficulty, pretraining smoke."""
import hashlib
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from prometar import world
    from prometar.clip_loader import CLIP_SHAPES, load_clip, resolve_clip_path

ASSET = Path(world.__file__).parent.parent / "assets" / "world_clip.pt"


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world_a")
    world.generate_world(root, seed=0, n_train=2, n_val=1, n_test=1)
    return root


@pytest.fixture(scope="module")
def eval_world(tmp_path_factory):
    """A freshly generated benchmark (seed never used for the shipped metadata): test split only."""
    root = tmp_path_factory.mktemp("world_eval")
    world.generate_world(root, seed=12345, n_train=0, n_val=0, n_test=12)
    return root


def test_generation_is_deterministic(small_world, tmp_path):
    same = world.generate_world(tmp_path / "same", seed=0, n_train=2, n_val=1, n_test=1)
    other = world.generate_world(tmp_path / "other", seed=1, n_train=2, n_val=1, n_test=1)
    ref = _digest(small_world / world.DATASET_DIR)
    assert _digest(same) == ref
    diff = _digest(other)
    assert diff.keys() == ref.keys()
    images = [k for k in ref if k.endswith(".png")]
    assert len(images) == 32 * 4
    assert all(diff[k] != ref[k] for k in images)


def test_split_schema_and_images(small_world):
    from PIL import Image

    folder = small_world / "prometar_world"
    with open(folder / "split_zhou_PrometarWorld.json") as f:
        split = json.load(f)
    assert list(split) == ["train", "val", "test"]
    assert [len(split[k]) for k in split] == [64, 32, 32]
    labels = set()
    for part in split.values():
        for entry in part:
            assert isinstance(entry, list) and len(entry) == 3
            rel, label, name = entry
            assert isinstance(rel, str) and isinstance(label, int) and isinstance(name, str)
            assert name == world.CLASSNAMES[label] and rel.startswith(name + "/")
            labels.add(label)
            with Image.open(folder / "images" / rel) as im:
                assert im.mode == "RGB" and im.size == (world.IMAGE_SIZE, world.IMAGE_SIZE)
    assert labels == set(range(len(world.CLASSNAMES)))
    assert len(set(world.CLASSNAMES)) == len(world.CLASSNAMES) == 32
    for name in world.CLASSNAMES:  # pattern_colour_shape, all attribute words known
        p, c, s = name.split("_")
        assert p in world.PATTERNS and c in world.COLOURS and s in world.SHAPES


def test_base_and_new_halves_are_balanced():
    n_base = math.ceil(len(world.CLASSNAMES) / 2)
    for part in (world.CLASSNAMES[:n_base], world.CLASSNAMES[n_base:]):
        shapes = [n.split("_")[2] for n in part]
        assert sorted(set(shapes)) == sorted(world.SHAPES)
        assert len({n.split("_")[0] for n in part}) == len(world.PATTERNS)


def test_shipped_weights_load():
    assert ASSET.is_file()
    assert ASSET.stat().st_size <= 10 * 1024 * 1024
    assert resolve_clip_path("prometar-world") == ASSET
    model = load_clip("prometar-world", precision="fp32")
    assert model.visual.input_resolution == world.WORLD_SHAPE["image_resolution"]
    assert model.token_embedding.weight.shape == (49408, world.WORLD_SHAPE["transformer_width"])
    meta = json.loads(ASSET.with_suffix(".json").read_text())
    for key in ("seed", "steps", "wall_time_s", "machine", "zeroshot"):
        assert key in meta
    assert meta["shape"] == world.WORLD_SHAPE


def test_shipped_model_zeroshot_is_informative_but_not_saturated(eval_world):
    model = load_clip("prometar-world", precision="fp32")
    acc = world.zeroshot_accuracy(model, eval_world)
    n_new = len(world.CLASSNAMES) - math.ceil(len(world.CLASSNAMES) / 2)
    assert set(acc) == {"base", "new", "all"}
    assert acc["new"] >= 3.0 / n_new, acc
    assert acc["base"] < 0.9 and acc["new"] < 0.9, acc


def test_zeroshot_cli(eval_world, capsys):
    assert world.main(["zeroshot", "--root", str(eval_world)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"base", "new", "all"}


def test_pretrain_smoke_is_reproducible(tmp_path):
    kwargs = dict(steps=3, batch_size=8, warmup=1, shape=CLIP_SHAPES["tiny"], log_every=1)
    a = world.pretrain(tmp_path / "a.pt", seed=0, **kwargs)
    b = world.pretrain(tmp_path / "b.pt", seed=0, **kwargs)
    c = world.pretrain(tmp_path / "c.pt", seed=1, **kwargs)
    sa, sb, sc = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b, c))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["steps"] == 3 and meta["seed"] == 0
    model = load_clip(str(a), precision="fp32")  # loads through OpenAI's builder
    assert model.visual.input_resolution == 32


def test_camera_moves_hues_and_keeps_greys():
    import numpy as np

    from prometar.world.scenes import camera

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    assert camera(img, 0.0) is img
    assert np.abs(camera(img, 360.0).astype(int) - img).max() <= 1
    grey = np.repeat(rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8), 3, axis=2)
    assert np.abs(camera(grey, 37.0).astype(int) - grey).max() <= 1
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert camera(red, 120.0)[0, 0].tolist() == [0, 255, 0]  # a third of a turn: red -> green
    towards_yellow = camera(red, 30.0)[0, 0]
    assert towards_yellow[0] > towards_yellow[1] > towards_yellow[2]


def test_generated_world_applies_and_records_the_camera(tmp_path):
    from PIL import Image

    a = world.generate_world(tmp_path / "a", seed=3, n_train=1, n_val=0, n_test=0, hue_shift=0.0)
    b = world.generate_world(tmp_path / "b", seed=3, n_train=1, n_val=0, n_test=0, hue_shift=45.0)
    assert json.loads((b / "generator.json").read_text())["hue_shift"] == 45.0
    name = world.CLASSNAMES[0]
    rel = f"images/{name}/{name}_0000.png"
    import numpy as np
    from prometar.world.scenes import camera

    plain = np.asarray(Image.open(a / rel))
    assert np.array_equal(np.asarray(Image.open(b / rel)), camera(plain, 45.0))


def _newton_logistic(x, y, n_classes, c, iters=60):
    """Independent reference: Newton's method on the same objective, numpy float64, full Hessian (pinv)."""
    import numpy as np

    n, d = x.shape
    xt = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros((d + 1) * n_classes)
    onehot = np.eye(n_classes)[y]
    reg = np.zeros((d + 1, n_classes))
    reg[:d] = 1.0  # the bias row is not penalised
    reg = reg.reshape(-1)
    for _ in range(iters):
        w = theta.reshape(d + 1, n_classes)
        z = xt @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = c * (xt.T @ (p - onehot)).reshape(-1) + reg * theta
        hess = np.zeros((theta.size, theta.size))
        for i in range(n):
            s = np.diag(p[i]) - np.outer(p[i], p[i])
            hess += c * np.kron(np.outer(xt[i], xt[i]), s)
        hess += np.diag(reg)
        theta = theta - np.linalg.pinv(hess) @ grad
    w = theta.reshape(d + 1, n_classes)
    return w[:d], w[d]


def test_linear_probe_solver_matches_a_newton_reference():
    import numpy as np

    from prometar.world.probe import _fit_logistic

    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 5))
    y = rng.integers(0, 3, size=40)
    x[np.arange(40), y] += 1.5  # partly separable
    for c in (0.3, 10.0):
        w_ref, b_ref = _newton_logistic(x, y, 3, c)
        w, b = _fit_logistic(torch.from_numpy(x), torch.from_numpy(y), 3, c)
        assert np.allclose(w.numpy(), w_ref, atol=1e-6, rtol=1e-6), (c, w.numpy(), w_ref)
        # the bias is defined up to a constant added to every class
        assert np.allclose(b.numpy() - b.numpy().mean(), b_ref - b_ref.mean(), atol=1e-6)


def test_probe_cli_reports_probe_zero_shot_and_headroom(tmp_path, capsys):
    root = tmp_path / "w"
    world.generate_world(root, seed=5, n_train=2, n_val=1, n_test=2)
    assert world.main(["probe", "--root", str(root), "--shots", "2", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for part in ("base", "new"):
        assert 0 <= out["linear_probe"][part] <= 100 and 0 <= out["zero_shot"][part] <= 100
        assert out["headroom"][part] == round(out["linear_probe"][part] - out["zero_shot"][part], 2)
    assert (root / world.DATASET_DIR / "split_fewshot" / "shot_2-seed_1.pkl").is_file()


def test_frozen_classnames_are_what_the_recorded_search_finds():
    from prometar.world.benchmark import search_classnames

    assert tuple(search_classnames()) == world.CLASSNAMES
