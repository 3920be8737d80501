"""Few-shot sampling, its cache file and base/new subsampling."""
import os
import random

import pytest
from fake_data import make_fake_dataset

from prometar.data import (
    Datum,
    build_dataset,
    build_lists,
    generate_fewshot,
    make_data_cfg,
    read_dataset_lists,
    sampling,
    subsample_classes,
)
from prometar.data.records import load_records


def reference_fewshot(train, val, n, seed):
    """Dassl's rule written out: the seeded global `random`, sample(range(len(group))) per group."""
    state = random.getstate()
    random.seed(seed)
    try:
        out = []
        for data, k in ((train, n), (val, min(n, 4))):
            order, groups = [], {}
            for item in data:
                if item.label not in groups:
                    order.append(item.label)
                    groups[item.label] = []
                groups[item.label].append(item)
            picked = []
            for label in order:
                group = groups[label]
                if len(group) < k:
                    picked += group
                else:
                    picked += [group[i] for i in random.sample(range(len(group)), k)]
            out.append(picked)
        return out
    finally:
        random.setstate(state)


COUNTS = [5, 12, 3, 9, 7]  # train parts 2, 7, 1, 5, 4 -> groups below and above N


@pytest.fixture
def dtd_root(tmp_path):
    make_fake_dataset("DescribableTextures", tmp_path, n_classes=5, n_per_class=COUNTS, seed=3)
    return tmp_path


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fewshot_matches_reference_and_is_deterministic(dtd_root, seed, capsys):
    train, val, test, _ = read_dataset_lists("DescribableTextures", str(dtd_root))
    want_train, want_val = reference_fewshot(train, val, 4, seed)
    lists = build_lists("DescribableTextures", str(dtd_root), num_shots=4, seed=seed)
    assert lists.train == want_train and lists.val == want_val and lists.test == test
    out = capsys.readouterr().out
    assert out.count("Creating a 4-shot dataset") == 2
    cache = os.path.join(dtd_root, "dtd", "split_fewshot", f"shot_4-seed_{seed}.pkl")
    assert f"Saving preprocessed few-shot data to {cache}" in out
    assert load_records(cache) == {"train": want_train, "val": want_val}
    # small group (1 train image) kept whole; the others have exactly 4
    sizes = {}
    for d in lists.train:
        sizes[d.label] = sizes.get(d.label, 0) + 1
    assert sizes == {0: 2, 1: 4, 2: 1, 3: 4, 4: 4}


def test_seeds_differ_and_repeat_identically(dtd_root):
    train, val, _, _ = read_dataset_lists("DescribableTextures", str(dtd_root))
    a = generate_fewshot(train, val, num_shots=2, seed=1)
    b = generate_fewshot(train, val, num_shots=2, seed=1)
    c = generate_fewshot(train, val, num_shots=2, seed=2)
    assert a == b and a != c
    assert generate_fewshot(train, num_shots=-1) is train
    rep = generate_fewshot(train, num_shots=6, rng=random.Random(0), repeat=True)
    assert len(rep) == 6 * 5


def test_cache_reused_without_rng(dtd_root, monkeypatch, capsys):
    first = build_lists("DescribableTextures", str(dtd_root), num_shots=2, seed=7)

    def no_rng(seed):
        raise AssertionError("the RNG must not be used when the cache exists")

    monkeypatch.setattr(sampling, "make_rng", no_rng)
    second = build_lists("DescribableTextures", str(dtd_root), num_shots=2, seed=7)
    assert (second.train, second.val) == (first.train, first.val)
    out = capsys.readouterr().out
    assert "Loading preprocessed few-shot data from" in out and out.count("Creating a") == 2  # first call only


def test_unseeded_cache_name_and_imagenet_train_only(tmp_path):
    make_fake_dataset("ImageNet", tmp_path, n_classes=3, n_per_class=6)
    lists = build_lists("ImageNet", str(tmp_path), num_shots=2, seed=-1)
    cache = os.path.join(tmp_path, "imagenet", "split_fewshot", "shot_2-seed_-1.pkl")
    assert list(load_records(cache)) == ["train"]
    assert len(lists.train) == 6 and lists.val is lists.test and len(lists.test) == 9


def test_base_new_relabel_odd_class_count(dtd_root, capsys):
    base = build_lists("DescribableTextures", str(dtd_root), num_shots=2, seed=1, subsample="base")
    new = build_lists("DescribableTextures", str(dtd_root), num_shots=2, seed=1, subsample="new")
    out = capsys.readouterr().out
    assert "SUBSAMPLE BASE CLASSES!" in out and "SUBSAMPLE NEW CLASSES!" in out
    full = build_lists("DescribableTextures", str(dtd_root), num_shots=2, seed=1)
    names = sorted({(d.label, d.classname) for d in full.test})
    assert sorted({(d.label, d.classname) for d in base.test}) == [(i, n) for i, (_, n) in enumerate(names[:3])]
    assert sorted({(d.label, d.classname) for d in new.test}) == [(i, n) for i, (_, n) in enumerate(names[3:])]
    # same records in list order, only relabelled
    assert [d.impath for d in base.train] == [d.impath for d in full.train if d.label < 3]
    assert [d.impath for d in new.val] == [d.impath for d in full.val if d.label >= 3]


def test_subsample_rules_on_plain_records(tmp_path):
    img = tmp_path / "x.jpg"
    img.write_bytes(b"x")
    mk = lambda y: Datum(str(img), y, 0, f"c{y}")  # noqa: E731
    train = [mk(y) for y in (9, 2, 5, 2, 7)]  # labels {2,5,7,9}: base 2,5 -> 0,1; new 7,9 -> 0,1
    other = [mk(y) for y in (7, 5, 3)]
    b_train, b_other = subsample_classes(train, other, subsample="base")
    assert [d.label for d in b_train] == [0, 1, 0] and [d.classname for d in b_other] == ["c5"]
    n_train, n_other = subsample_classes(train, other, subsample="new")
    assert [d.label for d in n_train] == [1, 0] and [(d.label, d.classname) for d in n_other] == [(0, "c7")]
    same = subsample_classes(train, other, subsample="all")
    assert same[0] is train and same[1] is other
    with pytest.raises(ValueError, match=r"SUBSAMPLE_CLASSES.*'half'"):
        subsample_classes(train, subsample="half")


def test_build_dataset_with_cfg(dtd_root):
    cfg = make_data_cfg(name="DescribableTextures", root=str(dtd_root), num_shots=2, subsample_classes="base")
    cfg.SEED = 1
    ds = build_dataset(cfg)
    assert ds.num_classes == 3 and len(ds.classnames) == 3
    assert len(ds.train_x) == 2 + 2 + 1 and len(ds.val) == 1 + 2 + 1


def test_capped_shots_warning_counts_only_the_classes_used(tmp_path, capsys):
    """NUM_SHOTS above a class's training images: the warning names the classes of THIS run (the base half of a
    base run), not every class of the dataset."""
    make_fake_dataset("DescribableTextures", str(tmp_path), n_classes=4, n_per_class=[20, 20, 20, 5])
    build_lists("DescribableTextures", str(tmp_path), num_shots=8, seed=1, subsample="base")
    assert "Warning: DATASET.NUM_SHOTS" not in capsys.readouterr().out  # the short class is a new class
    build_lists("DescribableTextures", str(tmp_path), num_shots=8, seed=1, subsample="new")
    out = capsys.readouterr().out
    assert "but 1 of 2 classes have fewer training images" in out
