"""Datum records and Dassl pickle compatibility in both directions (no Dassl installed)."""
import os
import pickle
import sys
import types

import pytest

from prometar.data.records import Datum, dump_records, dumps_records, load_records, loads_records

DASSL_MOD = "dassl.data.datasets.base_dataset"


@pytest.fixture
def fake_dassl(monkeypatch):
    """A stand-in `dassl.data.datasets.base_dataset.Datum` living only in sys.modules for this test."""

    class Datum:  # same shape as Dassl's class: private attributes, no custom pickling
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    Datum.__module__, Datum.__qualname__ = DASSL_MOD, "Datum"
    parts = DASSL_MOD.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[DASSL_MOD].Datum = Datum
    return Datum


def test_datum_fields_and_existence_check(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    d = Datum(str(img), 3, 0, "apple_pie")
    assert (d.impath, d.label, d.domain, d.classname) == (str(img), 3, 0, "apple_pie")
    assert vars(d) == {"_impath": str(img), "_label": 3, "_domain": 0, "_classname": "apple_pie"}
    with pytest.raises(AttributeError):
        d.label = 4
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        Datum(missing)
    with pytest.raises(TypeError, match="impath must be a str"):
        Datum(123, check_file=False)


def test_dassl_reads_our_cache(fake_dassl):
    ours = {"train": [Datum("/d/x.jpg", 1, 0, "face", check_file=False),
                      Datum("/d/y é.jpg", 2**40, 0, "polka-dotted", check_file=False)],
            "val": [Datum("/d/z.jpg", 0, 0, "Annual Crop Land", check_file=False)]}
    loaded = pickle.loads(dumps_records(ours))  # plain pickle, as Dassl loads its caches
    assert list(loaded) == ["train", "val"]
    for key in ours:
        for got, want in zip(loaded[key], ours[key], strict=True):
            assert type(got) is fake_dassl
            assert vars(got) == vars(want)


def test_we_read_dassls_cache_without_dassl(fake_dassl, monkeypatch):
    data = {"train": [fake_dassl("/d/a.jpg", 4, 0, "leopard")], "val": [fake_dassl("/d/b.jpg", 0, 0, "face")]}
    blobs = [pickle.dumps(data, protocol=p) for p in (2, pickle.HIGHEST_PROTOCOL)]
    monkeypatch.delitem(sys.modules, DASSL_MOD)  # Dassl gone again
    for blob in blobs:
        assert DASSL_MOD.encode() in blob
        got = loads_records(blob)
        assert got["train"] == [Datum("/d/a.jpg", 4, 0, "leopard", check_file=False)]
        assert got["val"][0].classname == "face" and isinstance(got["val"][0], Datum)


def test_round_trip_file_is_atomic(tmp_path):
    path = str(tmp_path / "shot_2-seed_1.pkl")
    data = {"train": [Datum(f"/d/{i}.jpg", i % 3, 0, f"c{i % 3}", check_file=False) for i in range(2500)]}
    dump_records(data, path)
    dump_records(data, path)  # replaces the file
    assert os.listdir(tmp_path) == ["shot_2-seed_1.pkl"]
    assert load_records(path) == data
    with pytest.raises(TypeError, match="expected Datum"):
        dump_records({"train": ["not a datum"]}, str(tmp_path / "bad.pkl"))
    assert os.listdir(tmp_path) == ["shot_2-seed_1.pkl"]


def test_reader_refuses_foreign_globals(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": [os.path.join]}))
    with pytest.raises(pickle.UnpicklingError, match=r"evil.pkl.*unexpected global"):
        load_records(str(path))
