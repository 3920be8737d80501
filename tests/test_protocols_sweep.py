"""The README's protocols run as a user runs them (the scripts and `prometar sweep`, real train.py processes on
generated data), checked by their OUTCOME: the report's numbers are the logs' numbers, each evaluation loaded the
model its training wrote, a changed option is never answered with old results.

Base-to-new via the scripts and the sweep (also on Dassl), the stale-config refusal with --rerun-changed, the
refusal of extra arguments that clash with the sweep's own and the few-shot sweep run on a small PrometarWorld
with its shipped CLIP (1 epoch, 2 shots), where runs of other options give other accuracies, so a report showing
old numbers would be seen. Cross-dataset / domain generalisation via the scripts and the sweep run on a source, two
targets and an ImageNet variant written by tests/fake_data.py with a small random CLIP; their classes have
different test-image counts, so that each dataset's accuracy differs and a mixed-up column would be seen."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_data import make_fake_dataset

from prometar.engine.runfolder import sha256_file
from prometar.report import harmonic_mean, report_main
from prometar.sweep.cli import sweep_main

REPO = Path(__file__).resolve().parent.parent
CFG = "vit_b16_c2_ep10_batch4_4+4ctx"  # cross-dataset runs (small random CLIP through the options)
WORLD_CFG = "world_ep10_batch4_4+4ctx"  # the other protocols: the shipped CLIP of the bundled world
WORLD = "prometar_world"
SHOTS = "2"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_clip_path):
    """A small PrometarWorld, four 4-class datasets in their CoOp layouts, and the train.py options of the runs."""
    from prometar.world import generate_world

    world = tmp_path_factory.mktemp("protocol_world")
    generate_world(world, seed=0, n_train=4, n_val=1, n_test=4)
    root = tmp_path_factory.mktemp("protocol_data")
    for name, counts in (("EuroSAT", [6, 8, 10, 12]), ("DescribableTextures", [4, 5, 13, 20]),
                         ("ImageNet", [8, 8, 8, 8]), ("ImageNetA", [3, 5, 7, 9])):
        make_fake_dataset(name, str(root), n_classes=4, n_per_class=counts, image_size=32)
    common = ["--device", "cpu", "OPTIM.MAX_EPOCH", "1", "OPTIM_VNET.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0"]
    small = ["MODEL.BACKBONE.NAME", str(small_clip_path), "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32",
             "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2",
             "DATALOADER.TEST.BATCH_SIZE", "16"]
    world_opts = ["OPTIM.WARMUP_EPOCH", "0"]  # one epoch at the real LR (a warm-up epoch barely moves the prompts)
    return {"data": str(root), "world": str(world), "extra": ["--engine", "builtin", *common, *small],
            "world_extra": ["--engine", "builtin", *common, *world_opts],
            "dassl_extra": ["--engine", "dassl", *common, *world_opts]}


def _log_accuracy(folder) -> float:
    """The last ``* accuracy: x%`` of a folder's log.txt, read here without the package's parser."""
    values = re.findall(r"^\* accuracy: ([0-9.]+)%$", Path(folder, "log.txt").read_text(), flags=re.M)
    assert values, f"no accuracy in {folder}/log.txt"
    return float(values[-1])


def _csv(out, protocol):
    with open(Path(out, "report.csv")) as f:
        return [row for row in csv.DictReader(f) if row["protocol"] == protocol]


def _sh(env, script, *args):
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _env(setup, out, data="data", **more):
    return dict(os.environ, DATA=setup[data], OUTPUT=str(out), SHOTS=SHOTS, PYTHON=sys.executable,
                SWEEP_ARGS="--threads 1 --progress-interval 600", **more)


def _sweep(setup, out, protocol, *flags, extra=None):
    """`prometar sweep` on the cross-dataset data, or with ``extra`` given, on the world with its config."""
    where = ["--data", setup["data"]] if extra is None else ["--data", setup["world"], "--configs", WORLD_CFG]
    return sweep_main([protocol, *where, "--output", str(out), "--seeds", "1", "--threads", "1",
                       "--progress-interval", "600", *flags, "--", *(setup["extra"] if extra is None else extra)])


def _evaluated(eval_dir, train_dir, epoch=1):
    """The evaluation's provenance names the learner file the training wrote (same bytes)."""
    import json

    model = json.loads(Path(eval_dir, "provenance.json").read_text())["runs"][-1]["model"]
    trained = Path(train_dir, "VLPromptLearner", f"model.pth.tar-{epoch}")
    assert Path(model["file"]) == trained and model["sha256"] == sha256_file(str(trained))
    return model["sha256"]


def _b2n_dirs(out, dataset=WORLD):
    common = f"{dataset}/shots_{SHOTS}/ProMetaR/{WORLD_CFG}/seed1"
    return Path(out, "base2new/train_base", common), Path(out, "base2new/test_new", common)


def _assert_base2new_report_equals_logs(out, datasets):
    rows = {r["dataset"]: r for r in _csv(out, "base2new")}
    for d in datasets:
        train, test = _b2n_dirs(out, d)
        b, n = _log_accuracy(train), _log_accuracy(test)
        assert float(rows[d]["base_mean"]) == pytest.approx(b, abs=1e-4)
        assert float(rows[d]["new_mean"]) == pytest.approx(n, abs=1e-4)
        assert float(rows[d]["hm"]) == pytest.approx(harmonic_mean(b, n), abs=1e-4)
        assert rows[d]["partial"] == "0"


def _commands(out):
    """Output folder -> the train.py argv of its last run, from the sweeps' summaries."""
    import json

    cmds = {}
    for path in sorted(Path(out, "sweeps").glob("*/summary.json")):
        for job in json.loads(path.read_text())["jobs"]:
            if job["argv"]:
                cmds[job["output_dir"]] = job["argv"]
    return cmds


# ------------------------------------------------------------------------------------------------ base-to-new
def test_base2new_scripts_and_sweep_then_a_changed_option_is_refused_and_rerun(setup, tmp_path, capsys):
    out, extra = tmp_path / "out", setup["world_extra"]
    env = _env(setup, out, data="world", CFG=WORLD_CFG)
    r = _sh(env, "base2new_test.sh", WORLD, "1", "new", *extra)
    assert r.returncode != 0 and f"run base2new_train.sh {WORLD} 1 first" in r.stderr
    assert _sh(env, "base2new_train.sh", WORLD, "1", *extra).returncode == 0
    r = _sh(env, "base2new_test.sh", WORLD, "1", "new", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    train, test = _b2n_dirs(out)
    # the calls are the CoOp-family scripts' calls
    cmds = _commands(out)
    head = ["train.py", "--root", setup["world"], "--seed", "1", "--trainer", "ProMetaR", "--dataset-config-file",
            f"configs/datasets/{WORLD}.yaml", "--config-file", f"configs/trainers/ProMetaR/{WORLD_CFG}.yaml",
            "--output-dir"]
    assert cmds[str(train)][1:14] == head + [str(train)]
    assert cmds[str(train)][-4:] == ["DATASET.NUM_SHOTS", SHOTS, "DATASET.SUBSAMPLE_CLASSES", "base"]
    assert cmds[str(test)][1:19] == head + [str(test), "--model-dir", str(train), "--load-epoch", "1", "--eval-only"]
    assert cmds[str(test)][-4:] == ["DATASET.NUM_SHOTS", SHOTS, "DATASET.SUBSAMPLE_CLASSES", "new"]
    old_sha = _evaluated(test, train)
    # base2new_all.sh is the sweep: the scripts' runs are current for it (same folders, same config), and its
    # report shows their logs' numbers
    r = _sh(dict(env, DATASETS=WORLD, SEEDS="1"), "base2new_all.sh", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("[sweep] Skip ") == 2 and "Start " not in r.stdout and "| PrometarWorld" in r.stdout
    _assert_base2new_report_equals_logs(out, [WORLD])
    old = (_log_accuracy(train), _log_accuracy(test))

    # the same sweep with another option: refused before anything runs, each folder listed with the key
    changed = [*extra, "OPTIM.LR", "0.5"]
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, "--shots", SHOTS, extra=changed) == 2
    err = capsys.readouterr().err
    assert err.count("OPTIM.LR: 0.05 -> 0.5") == 2 and "--rerun-changed" in err
    assert f"  {train} (finished):" in err and f"  {test} (finished):" in err
    assert not list(out.rglob("*.changed-*"))
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, "--shots", SHOTS, "--dry-run", extra=changed) == 0
    note = "[made with another config (OPTIM.LR: 0.05 -> 0.5): refused without --rerun-changed]"
    assert capsys.readouterr().out.count(note) == 2
    # an option that sets what the sweep sets is refused, naming both (the scripts go through the sweep)
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, extra=[*extra, "DATASET.NUM_SHOTS", "4"]) == 2
    assert "DATASET.NUM_SHOTS 4 after -- clashes with the sweep's --shots" in capsys.readouterr().err
    r = _sh(env, "base2new_train.sh", WORLD, "1", "--seed", "2", *extra)
    assert r.returncode == 2 and "--seed 2 after -- clashes with the sweep's --seeds" in r.stderr
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, extra=[*extra, "OPTIM.NO_SUCH_KEY", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not make a config" in err and "OPTIM.NO_SUCH_KEY" in err

    # --rerun-changed: the folders are moved aside (kept), retrained and re-evaluated; the report is the new one
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, "--shots", SHOTS, "--rerun-changed",
                  extra=changed) == 0
    printed = capsys.readouterr().out
    for folder, acc in zip((train, test), old):
        [kept] = folder.parent.glob("seed1.changed-*")
        assert _log_accuracy(kept) == acc and f"the old folder is kept as {kept}" in printed
    assert yaml.safe_load((train / "config.yaml").read_text())["OPTIM"]["LR"] == 0.5
    assert _evaluated(test, train) != old_sha  # the new evaluation loaded the new model
    assert (_log_accuracy(train), _log_accuracy(test)) != old  # so the report below cannot show the old numbers
    _assert_base2new_report_equals_logs(out, [WORLD])


def test_base2new_sweep_on_dassl_reports_its_logs(setup, tmp_path):
    pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (not on PyPI); see the README to install it")
    out = tmp_path / "out"
    assert _sweep(setup, out, "base2new", "--datasets", WORLD, "--shots", SHOTS, extra=setup["dassl_extra"]) == 0
    train, test = _b2n_dirs(out)
    assert "Engine: Dassl" in (train / "log.txt").read_text() and "Engine: Dassl" in (test / "log.txt").read_text()
    _evaluated(test, train)
    _assert_base2new_report_equals_logs(out, [WORLD])


# ------------------------------------------------------------------------------------------------ xd / dg
def test_xd_scripts_and_sweep_end_with_the_two_paper_tables(setup, tmp_path, capsys):
    out, extra = tmp_path / "out", setup["extra"]
    env = _env(setup, out)
    assert _sh(env, "xd_train.sh", "1", *extra).returncode == 0
    r = _sh(env, "xd_test.sh", "imagenet_a", "1", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Domain generalisation:" in r.stdout and "ImageNet-A" in r.stdout
    assert _sweep(setup, out, "xd", "--datasets", "eurosat", "dtd", "imagenet_a", "--shots", SHOTS) == 0
    printed = capsys.readouterr().out
    assert printed.count("[sweep] Skip ") == 2 and "Cross-dataset evaluation:" in printed
    source = out / f"imagenet/ProMetaR/{CFG}_{SHOTS}shots/seed1"
    evals = {t: out / f"evaluation/ProMetaR/{CFG}_{SHOTS}shots/{t}/seed1" for t in ("eurosat", "dtd", "imagenet_a")}
    for folder in evals.values():
        _evaluated(folder, source)
        assert yaml.safe_load((folder / "config.yaml").read_text())["DATASET"]["SUBSAMPLE_CLASSES"] == "all"
    md = (out / "report.md").read_text()
    assert "## Cross-dataset evaluation" in md and "## Domain generalisation" in md
    rows = {(r["table"], r["dataset"]): r for r in _csv(out, "xd")}
    acc = {t: _log_accuracy(f) for t, f in evals.items()}
    assert len({*acc.values(), _log_accuracy(source)}) == 4  # distinct numbers: a mixed-up column would show
    for table, targets in (("cross_dataset", ["eurosat", "dtd"]), ("domain_generalisation", ["imagenet_a"])):
        assert float(rows[(table, "imagenet")]["accuracy_mean"]) == pytest.approx(_log_accuracy(source), abs=1e-4)
        for t in targets:
            assert float(rows[(table, t)]["accuracy_mean"]) == pytest.approx(acc[t], abs=1e-4)
        average = sum(acc[t] for t in targets) / len(targets)
        assert float(rows[(table, "average")]["accuracy_mean"]) == pytest.approx(average, abs=1e-4)
        assert rows[(table, "average")]["partial"] == "1"  # fewer targets than the paper's table
    assert (out / "report_xd.png").stat().st_size > 0
    # `prometar report` on the folder writes the same tables
    assert report_main([str(out), "--out", str(tmp_path / "again"), "--no-plot"]) == 0
    assert (tmp_path / "again/report.csv").read_text() == (out / "report.csv").read_text()


# ------------------------------------------------------------------------------------------------ few-shot
def test_fewshot_sweep_reports_accuracy_against_shots(setup, tmp_path):
    out = tmp_path / "out"
    assert _sweep(setup, out, "fewshot", "--datasets", WORLD, "--shots", "1", "2", extra=setup["world_extra"]) == 0
    rows = {r["shots"]: r for r in _csv(out, "fewshot") if r["dataset"] == WORLD}
    assert sorted(rows) == ["1", "2"]
    acc = {}
    for k in (1, 2):
        folder = out / f"fewshot/{WORLD}/ProMetaR/{WORLD_CFG}_{k}shots/seed1"
        cfg = yaml.safe_load((folder / "config.yaml").read_text())["DATASET"]
        assert cfg["NUM_SHOTS"] == k and cfg["SUBSAMPLE_CLASSES"] == "all"
        acc[k] = _log_accuracy(folder)
        assert float(rows[str(k)]["accuracy_mean"]) == pytest.approx(acc[k], abs=1e-4)
    assert acc[1] != acc[2]  # the columns cannot be swapped unseen
    md = (out / "report.md").read_text()
    assert "# Few-shot report" in md and "| 1 shot" in md and "| 2 shots" in md
    assert (out / "report_fewshot.png").stat().st_size > 0
