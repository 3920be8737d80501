"""The bundled default end to end: `prometar demo` on the procedural benchmark with the shipped small CLIP."""
import csv


from prometar.demo import main as demo_main


def test_demo_trains_and_reports_well_above_chance(tmp_path, capsys):
    out = tmp_path / "out"
    # The demo's real pipeline with a shortened schedule (1 epoch, 4 shots) to keep the suite fast.
    code = demo_main(["--data", str(tmp_path / "data"), "--output", str(out), "--device", "cpu",
                      "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "4",
                      "DATALOADER.NUM_WORKERS", "0"])
    assert code == 0
    assert "ZeroShotCLIP" in capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "report.png").is_file()
    with open(out / "report.csv") as f:
        rows = {row["trainer"]: row for row in csv.DictReader(f) if row["dataset"] == "prometar_world"}
    assert set(rows) == {"ZeroShotCLIP", "ProMetaR"}
    chance = 100 / 16  # 16 base and 16 new classes
    for row in rows.values():
        assert float(row["base_mean"]) > 3 * chance and float(row["new_mean"]) > 3 * chance, row
        assert float(row["hm"]) > 3 * chance
