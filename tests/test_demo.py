"""The bundled default end to end: `prometar demo` on the procedural benchmark with the shipped small CLIP."""
import csv
import json
import re


from prometar.demo import main as demo_main


def test_demo_trains_reports_well_above_chance_and_reruns_what_changed(tmp_path, capsys):
    out = tmp_path / "out"
    # The demo's real pipeline with a shortened schedule (1 epoch, 4 shots) to keep the suite fast.
    code = demo_main(["--data", str(tmp_path / "data"), "--output", str(out), "--device", "cpu",
                      "--methods", "ZeroShotCLIP,LinearProbe,CoOp,IVLP,ProMetaR",
                      "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "4",
                      "DATALOADER.NUM_WORKERS", "0"])
    assert code == 0
    assert "ZeroShotCLIP" in capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "report.png").is_file()
    with open(out / "report.csv") as f:
        rows = {row["trainer"]: row for row in csv.DictReader(f) if row["dataset"] == "prometar_world"}
    assert set(rows) == {"ZeroShotCLIP", "LinearProbe", "CoOp", "IVLP", "ProMetaR"}
    chance = 100 / 16  # 16 base and 16 new classes
    for row in rows.values():
        assert float(row["base_mean"]) > 3 * chance and float(row["new_mean"]) > 3 * chance, row
        assert float(row["hm"]) > 3 * chance
    summary = json.loads((out / "demo.json").read_text())
    assert set(summary) == {"zero_shot", "linear_probe", "coop", "ivlp", "prometar", "seeds", "wall_s"}
    assert summary["seeds"] == [1]
    for key, trainer in (("zero_shot", "ZeroShotCLIP"), ("linear_probe", "LinearProbe"), ("prometar", "ProMetaR")):
        assert abs(summary[key]["base"] - float(rows[trainer]["base_mean"])) < 0.01
        assert abs(summary[key]["new"] - float(rows[trainer]["new_mean"])) < 0.01
        assert summary[key]["seeds"] == [1]
    probe_log = next((out / "base2new" / "test_new").rglob("LinearProbe/linear_probe/seed1/log.txt")).read_text()
    assert "4 shots of the new classes, seed 1" in probe_log

    # Run again with another schedule: the demo re-runs what changed by itself, says so and keeps the old runs;
    # the report shows the new runs only. With 4 epochs (the first is the warm-up) IVLP's prompts raise base
    # accuracy well above zero-shot CLIP (the bundled world leaves ~17 points of headroom at 10 epochs, 16 shots).
    code = demo_main(["--data", str(tmp_path / "data"), "--output", str(out), "--device", "cpu", "--methods", "IVLP",
                      "OPTIM.MAX_EPOCH", "4", "OPTIM_VNET.MAX_EPOCH", "4", "DATASET.NUM_SHOTS", "4",
                      "DATALOADER.NUM_WORKERS", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "IVLP seed 1: train on base classes: running again, it was made with another config: " \
           "OPTIM.MAX_EPOCH: 1 -> 4" in printed
    assert "IVLP seed 1: evaluate new classes: running again" in printed
    train = next((out / "base2new" / "train_base").rglob("IVLP/*/seed1"))
    [kept] = train.parent.glob("seed1.changed-*")
    assert "epoch [1/1]" in (kept / "log.txt").read_text() and "epoch [4/4]" in (train / "log.txt").read_text()
    with open(out / "report.csv") as f:
        rows = {row["trainer"]: row for row in csv.DictReader(f) if row["dataset"] == "prometar_world"}
    final = re.findall(r"^\* accuracy: ([0-9.]+)%$", (train / "log.txt").read_text(), flags=re.M)[-1]
    assert float(rows["IVLP"]["base_mean"]) == float(final)  # the 4-epoch run, not the 1-epoch one
    assert float(rows["IVLP"]["base_mean"]) >= float(rows["ZeroShotCLIP"]["base_mean"]) + 5, rows


def test_demo_refuses_an_unknown_method(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        demo_main(["--data", str(tmp_path / "data"), "--methods", "IVLP,CoCoOp"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "CoCoOp" in err and "ZeroShotCLIP" in err
    assert not (tmp_path / "data").exists()


def test_demo_says_when_an_existing_benchmark_is_not_the_default(tmp_path, capsys):
    from prometar.world import generate_world

    generate_world(tmp_path / "data", seed=0, n_train=2, n_val=1, n_test=2, hue_shift=0.0, hardness=1.0)
    code = demo_main(["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--device", "cpu",
                      "--methods", "ZeroShotCLIP", "DATASET.NUM_SHOTS", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "not the default one: hue_shift 0.0 (default 30.0), hardness 1.0 (default 0.75)" in out
    assert str(tmp_path / "data" / "prometar_world" / "generator.json") in out
