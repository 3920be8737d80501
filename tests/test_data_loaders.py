"""Loaders like Dassl's DataManager: batches, drop_last rule, summary, errors."""
import os
import types

import pytest
import torch
from fake_data import make_fake_dataset

from prometar.data import DataManager, build_data, make_data_cfg
from prometar.data.loaders import DatasetWrapper


def cfg_for(name, root, train_bs=4, **dataset):
    return make_data_cfg(
        {
            "INPUT.SIZE": (8, 8),
            "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize"),
            "DATALOADER.NUM_WORKERS": 0,
            "DATALOADER.TRAIN_X.BATCH_SIZE": train_bs,
            "DATALOADER.TEST.BATCH_SIZE": 5,
        },
        name=name,
        root=str(root),
        **dataset,
    )


def test_batches_drop_last_and_summary(tmp_path, capsys):
    make_fake_dataset("EuroSAT", tmp_path, n_classes=3, n_per_class=5)  # 6 train, 3 val, 6 test
    dm = build_data(cfg_for("EuroSAT", tmp_path))
    out = capsys.readouterr().out
    assert "Loading dataset: EuroSAT" in out and "Building transform_train" in out and "Building transform_test" in out
    rows = [line.split() for line in out.splitlines()[-7:]]
    assert rows[1:6] == [["Dataset", "EuroSAT"], ["#", "classes", "3"], ["#", "train_x", "6"], ["#", "val", "3"],
                         ["#", "test", "6"]]
    assert isinstance(dm.train_loader_x.sampler, torch.utils.data.RandomSampler)
    assert isinstance(dm.test_loader.sampler, torch.utils.data.SequentialSampler)
    assert dm.train_loader_x.drop_last and len(dm.train_loader_x) == 1  # 6 items, batch 4
    assert not dm.test_loader.drop_last and len(dm.test_loader) == 2
    assert dm.num_classes == 3 and dm.classnames[0] == "Annual Crop Land" and dm.lab2cname[1] == "Forest"
    batch = next(iter(dm.test_loader))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (5, 3, 8, 8) and batch["label"].dtype == torch.int64
    assert batch["index"].tolist() == list(range(5))
    assert batch["impath"] == [d.impath for d in dm.dataset.test[:5]]
    # no full batch -> no drop_last, one short batch
    dm = build_data(cfg_for("EuroSAT", tmp_path, train_bs=8))
    assert not dm.train_loader_x.drop_last and len(dm.train_loader_x) == 1


def test_seeded_order_is_reproducible(tmp_path):
    make_fake_dataset("DescribableTextures", tmp_path, n_classes=3, n_per_class=5)
    dm = build_data(cfg_for("DescribableTextures", tmp_path, train_bs=2))

    def order():
        torch.manual_seed(5)
        return [b["index"].tolist() for b in dm.train_loader_x]

    assert order() == order()


def test_test_only_dataset_has_no_val_loader(tmp_path, capsys):
    make_fake_dataset("ImageNetR", tmp_path, n_classes=2, n_per_class=3)
    dm = build_data(cfg_for("ImageNetR", tmp_path))
    assert dm.val_loader is None and "# val" not in capsys.readouterr().out
    assert len(dm.dataset.test) == 6


def test_summary_uses_thousands_separators(capsys):
    ds = types.SimpleNamespace(train_x=[None] * 1234, train_u=None, val=[None] * 4200, test=[None] * 50000)
    stub = types.SimpleNamespace(dataset=ds, num_classes=1000)
    DataManager.show_dataset_summary(stub, make_data_cfg(name="ImageNet"))
    out = capsys.readouterr().out
    assert "1,234" in out and "4,200" in out and "50,000" in out and "1,000" in out


def test_unreadable_image_names_the_file(tmp_path):
    ddir = make_fake_dataset("Food101", tmp_path, n_classes=2, n_per_class=3)
    dm = build_data(cfg_for("Food101", tmp_path))
    victim = dm.dataset.test[0].impath
    with open(victim, "wb") as f:
        f.write(b"not an image")
    wrapper = DatasetWrapper(cfg_for("Food101", tmp_path), dm.dataset.test, transform=dm.tfm_test)
    with pytest.raises(OSError, match=os.path.basename(victim)):
        wrapper[0]
    os.remove(victim)
    with pytest.raises(FileNotFoundError, match=os.path.basename(victim)):
        wrapper[0]
    assert ddir in victim
