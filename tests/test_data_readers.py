"""Every reader on its miniature layout: counts, labels, class-name rules, fallbacks, errors."""
import json
import os
import pickle

import pytest
from fake_data import make_fake_dataset

from prometar.data import (
    SPECS,
    DatasetLayoutError,
    build_dataset,
    make_data_cfg,
    read_dataset_lists,
)
from prometar.data.records import load_records


def read(name, root):
    return read_dataset_lists(name, str(root))


def names_by_label(records):
    return dict(sorted({(d.label, d.classname) for d in records}))


@pytest.mark.parametrize("name", list(SPECS))
def test_reader_on_fake_layout(name, tmp_path):
    ddir = make_fake_dataset(name, str(tmp_path), n_classes=3, n_per_class=5)
    train, val, test, info = read(name, tmp_path)
    assert info.dataset_dir == ddir == os.path.join(str(tmp_path), SPECS[name].dataset_dir)
    if SPECS[name].test_only:  # train_x is the test list, no val, no split_fewshot
        assert train is test and val is None and len(test) == 15
        assert not os.path.exists(os.path.join(ddir, "split_fewshot"))
    elif name == "ImageNet":
        assert (len(train), val, len(test)) == (15, None, 6)
    else:  # 5 per class -> 2 train, 1 val, 2 test
        assert (len(train), len(val), len(test)) == (6, 3, 6)
        assert {d.label for d in val} == {0, 1, 2}
    if not SPECS[name].test_only:
        assert os.path.isdir(os.path.join(ddir, "split_fewshot"))
    assert {d.label for d in train} == {0, 1, 2} == {d.label for d in test}
    assert all(os.path.isabs(d.impath) and os.path.isfile(d.impath) and d.domain == 0 for d in train + test)
    assert names_by_label(train) == names_by_label(test)


def test_caltech_renames_ignored_folders_and_fallback(tmp_path, capsys):
    ddir = make_fake_dataset("Caltech101", tmp_path, n_classes=6)
    want = {0: "face", 1: "leopard", 2: "motorbike", 3: "accordion", 4: "airplane", 5: "anchor"}
    train, val, test, _ = read("Caltech101", tmp_path)
    assert names_by_label(train) == want
    assert not any("BACKGROUND_Google" in d.impath or "Faces_easy" in d.impath for d in train + val + test)
    # without the JSON: the folder splitter regenerates a split with the same labels and names, and saves it
    split = os.path.join(ddir, "split_zhou_Caltech101.json")
    os.remove(split)
    train2, val2, test2, _ = read("Caltech101", tmp_path)
    out = capsys.readouterr().out
    assert "Splitting into 50% train, 20% val, and 30% test" in out and f"Saved split to {split}" in out
    assert names_by_label(train2) == want
    assert sorted(d.impath for d in train + val + test) == sorted(d.impath for d in train2 + val2 + test2)
    with open(split) as f:
        entry = json.load(f)["train"][0]
    assert not entry[0].startswith("/") and entry[0].split("/")[0] in {"Faces", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor"}
    assert read("Caltech101", tmp_path)[0] == train2  # the written split is read back


def test_eurosat_renames(tmp_path):
    make_fake_dataset("EuroSAT", tmp_path, n_classes=10, n_per_class=4)
    names = names_by_label(read("EuroSAT", tmp_path)[0])
    assert names[0] == "Annual Crop Land" and names[3] == "Highway or Road" and names[9] == "Sea or Lake"
    assert all("/2750/" in d.impath for d in read("EuroSAT", tmp_path)[2])


def test_sun397_name_reversal_and_txt_fallback(tmp_path, capsys):
    ddir = make_fake_dataset("SUN397", tmp_path, n_classes=4)
    train, val, test, _ = read("SUN397", tmp_path)
    assert names_by_label(train) == {0: "abbey", 1: "outdoor apartment_building", 2: "shop bakery", 3: "bamboo_forest"}
    os.remove(os.path.join(ddir, "split_zhou_SUN397.json"))
    train2, val2, test2, _ = read("SUN397", tmp_path)
    assert "Splitting trainval into 80% train and 20% val" in capsys.readouterr().out
    assert sorted(test2, key=lambda d: d.impath) == sorted(test, key=lambda d: d.impath)
    assert set(train2 + val2) == set(train + val)


def test_stanford_cars_paths_relative_to_dataset_dir(tmp_path):
    ddir = make_fake_dataset("StanfordCars", tmp_path, n_classes=2)
    train, _, test, _ = read("StanfordCars", tmp_path)
    assert all(d.impath.startswith(os.path.join(ddir, "cars_train") + os.sep) for d in train)
    assert all(d.impath.startswith(os.path.join(ddir, "cars_test") + os.sep) for d in test)
    assert names_by_label(train)[0] == "2000 AM General Hummer SUV"


def test_oxford_pets_names_and_annotation_fallback(tmp_path):
    ddir = make_fake_dataset("OxfordPets", tmp_path, n_classes=5)
    train, val, test, _ = read("OxfordPets", tmp_path)
    want = {0: "abyssinian", 1: "american_bulldog", 2: "american_pit_bull_terrier", 3: "bengal", 4: "great_pyrenees"}
    assert names_by_label(train) == want
    assert os.path.basename(train[0].impath).rsplit("_", 1)[0].lower() == train[0].classname
    os.remove(os.path.join(ddir, "split_zhou_OxfordPets.json"))
    train2, val2, test2, _ = read("OxfordPets", tmp_path)
    assert names_by_label(train2) == want and set(test2) == set(test) and set(train2 + val2) == set(train + val)


def test_ucf101_names_and_list_fallback(tmp_path):
    ddir = make_fake_dataset("UCF101", tmp_path, n_classes=6)
    train, val, test, _ = read("UCF101", tmp_path)
    names = names_by_label(train)
    assert names[0] == "Apply_Eye_Makeup" and names[5] == "Yo_Yo" and names[4] == "Jumping_Jack"
    assert all(os.path.basename(os.path.dirname(d.impath)) == d.classname for d in train)
    os.remove(os.path.join(ddir, "split_zhou_UCF101.json"))
    train2, val2, test2, _ = read("UCF101", tmp_path)
    assert set(test2) == set(test) and set(train2 + val2) == set(train + val)


def test_fgvc_names_with_spaces_and_slash(tmp_path):
    make_fake_dataset("FGVCAircraft", tmp_path, n_classes=6)
    train, val, test, info = read("FGVCAircraft", tmp_path)
    names = names_by_label(train + val + test)
    assert names == {0: "707-320", 1: "A300B4", 2: "Boeing 717", 3: "Cessna 172", 4: "F-16A/B", 5: "DHC-1"}
    assert all(len(os.path.basename(d.impath)) == len("1234567.jpg") for d in test)


def test_imagenet_a_r_skip_readme_and_use_200_labels(tmp_path):
    make_fake_dataset("ImageNetA", tmp_path, n_classes=200, n_per_class=3, image_size=4)
    make_fake_dataset("ImageNetR", tmp_path, n_classes=3)
    for name, folder in (("ImageNetA", "imagenet-a"), ("ImageNetR", "imagenet-r")):
        ddir = SPECS[name].dataset_dir
        assert os.path.isfile(tmp_path / ddir / folder / "README.txt")
        data = read(name, tmp_path)[2]
        assert not any("README" in d.impath for d in data)
        with open(tmp_path / ddir / "classnames.txt") as f:
            lookup = dict(line.strip().split(" ", 1) for line in f)
        wnids = sorted(os.listdir(tmp_path / ddir / folder))
        wnids.remove("README.txt")
        for d in data:  # label = index of the wnid folder, name looked up by wnid (not by line number)
            wnid = os.path.basename(os.path.dirname(d.impath))
            assert d.label == wnids.index(wnid) and d.classname == lookup[wnid]
    data = read("ImageNetA", tmp_path)[2]
    assert sorted({d.label for d in data}) == list(range(200))


def test_imagenet_cache_written_in_dassl_format_and_reused(tmp_path):
    ddir = make_fake_dataset("ImageNet", tmp_path, n_classes=3, n_per_class=4)
    train, _, test, _ = read("ImageNet", tmp_path)
    cache = os.path.join(ddir, "preprocessed.pkl")
    with open(cache, "rb") as f:
        assert b"dassl.data.datasets.base_dataset" in f.read()
    assert load_records(cache) == {"train": train, "test": test}
    os.remove(os.path.join(ddir, "classnames.txt"))  # not read when the cache exists
    assert read("ImageNet", tmp_path)[0] == train


def test_imagenetv2_labels_are_folder_numbers(tmp_path):
    make_fake_dataset("ImageNetV2", tmp_path, n_classes=3)
    for d in read("ImageNetV2", tmp_path)[2]:
        assert os.path.basename(os.path.dirname(d.impath)) == str(d.label)


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_dataset_folder_names_path_and_layout(tmp_path):
    with pytest.raises(DatasetLayoutError) as err:
        read("EuroSAT", tmp_path)
    msg = str(err.value)
    assert os.path.join(str(tmp_path), "eurosat") in msg
    assert "2750/<ClassFolder>/<ClassFolder>_<n>.jpg" in msg and "split_zhou_EuroSAT.json" in msg
    assert not os.path.exists(tmp_path / "eurosat")  # nothing created for a missing dataset


def test_missing_image_names_the_file(tmp_path):
    ddir = make_fake_dataset("DescribableTextures", tmp_path, n_classes=2)
    victim = os.path.join(ddir, "images", "banded", "banded_0001.jpg")
    os.remove(victim)
    with pytest.raises(FileNotFoundError, match="banded_0001.jpg") as err:
        read("DescribableTextures", tmp_path)
    assert "split_zhou_DescribableTextures.json" in str(err.value)


def test_missing_split_without_fallback_names_file_and_source(tmp_path):
    ddir = make_fake_dataset("OxfordFlowers", tmp_path, n_classes=2)
    os.remove(os.path.join(ddir, "split_zhou_OxfordFlowers.json"))
    with pytest.raises(DatasetLayoutError) as err:
        read("OxfordFlowers", tmp_path)
    msg = str(err.value)
    assert os.path.join(ddir, "split_zhou_OxfordFlowers.json") in msg
    assert "https://drive.google.com/file/d/1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT/view" in msg


def test_missing_split_and_images_for_fallback(tmp_path):
    (tmp_path / "ucf101").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"split_zhou_UCF101.json.*\n(.|\n)*UCF-101-midframes"):
        read("UCF101", tmp_path)


def test_missing_class_in_classnames_and_bad_json(tmp_path):
    ddir = make_fake_dataset("ImageNetSketch", tmp_path, n_classes=2)
    with open(os.path.join(ddir, "classnames.txt"), "w") as f:
        f.write("n00000001 other\n")
    with pytest.raises(DatasetLayoutError, match=r"n01440764.*classnames.txt"):
        read("ImageNetSketch", tmp_path)
    ddir = make_fake_dataset("Food101", tmp_path, n_classes=2)
    with open(os.path.join(ddir, "split_zhou_Food101.json"), "w") as f:
        f.write('{"train": []}')
    with pytest.raises(ValueError, match=r'split_zhou_Food101.json has no "val"'):
        read("Food101", tmp_path)


def test_build_dataset_unknown_name_and_config_name(tmp_path):
    with pytest.raises(KeyError, match="EuroSAT"):
        build_dataset(make_data_cfg(name="eurosat", root=str(tmp_path)))
    with pytest.raises(KeyError, match="expected one of"):
        build_dataset(make_data_cfg(name="NoSuchSet", root=str(tmp_path)))


def test_build_dataset_derives_classes_from_train(tmp_path, capsys):
    make_fake_dataset("PrometarWorld", tmp_path, n_classes=3)
    ds = build_dataset(make_data_cfg(name="PrometarWorld", root=str(tmp_path)))
    assert "Loading dataset: PrometarWorld" in capsys.readouterr().out
    assert ds.num_classes == 3 and ds.classnames == ["circle", "square", "triangle"]
    assert ds.lab2cname == {0: "circle", 1: "square", 2: "triangle"}
    assert ds.dataset_dir == os.path.join(str(tmp_path), "prometar_world")
    assert pickle.loads(pickle.dumps(ds.train_x)) == ds.train_x
