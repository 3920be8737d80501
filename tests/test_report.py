"""Report over synthetic Dassl logs (the scripts and sweeps that write real ones: tests/test_protocols_sweep.py)."""
import csv
import os

import pytest

from prometar.report import harmonic_mean, load_published, parse_log, read_run, report_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = "vit_b16_c2_ep10_batch4_4+4ctx"


def _log(acc, train=False, end="Finish training", finished=True, val_block=False):
    lines = ["***************", "** Arguments **", "***************", "seed: 1", "************", "** Config **",
             "************", "SEED: 1", "Loading trainer: ProMetaR", "Loading evaluator: Classification"]
    if train:
        lines.append("No checkpoint found, train from scratch")
        lines.append("epoch [1/10] batch [20/20] time 0.412 (0.430) data 0.001 (0.015) loss 0.0123 (0.0456) "
                     "lr 2.5000e-03 eta 0:01:07")
        if val_block:  # best_val style evaluation during training
            lines += ["Evaluate on the *val* set", "=> result", "* total: 40", "* correct: 30",
                      "* accuracy: 75.0%", "* error: 25.0%", "* macro_f1: 74.0%"]
        if not finished:
            return "\n".join(lines) + "\n"
        lines += ["Checkpoint saved to output/VLPromptLearner/model.pth.tar-10", end, "Deploy the last-epoch model"]
    lines += ["Evaluate on the *test* set", "=> result", "* total: 4,200", "* correct: 3,917",
              f"* accuracy: {acc}%", "* error: 6.7%", "* macro_f1: 93.2%"]
    if train:
        lines.append("Elapsed: 0:01:10")
    return "\n".join(lines) + "\n"


def _put(root, split, dataset, seed, text, cfg=CFG, trainer="ProMetaR", name="log.txt"):
    d = os.path.join(root, "base2new", split, dataset, "shots_16", trainer, cfg, f"seed{seed}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
    return d


# ---------------------------------------------------------------- log parsing
def test_parse_log_variants(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text(_log(93.3, train=True))
    assert parse_log(str(p)).accuracy == 93.3
    p.write_text(_log(91.0, train=True, end="Finished training"))
    assert parse_log(str(p)).accuracy == 91.0
    p.write_text(_log(88.1))  # eval-only log
    assert parse_log(str(p)).accuracy == 88.1
    p.write_text(_log(80.0, train=True, val_block=True))  # last block after the end signal wins
    assert parse_log(str(p)).accuracy == 80.0
    p.write_text(_log(80.0, train=True, val_block=True, finished=False))  # crashed: val result ignored
    res = parse_log(str(p))
    assert res.accuracy is None and res.status == "unfinished"
    p.write_text("nothing here\n* accuracy: 50.0%\n")  # not armed by '=> result'
    assert parse_log(str(p)).status == "no-result"
    assert parse_log(str(tmp_path / "missing.txt")).status == "no-log"


def test_read_run_falls_back_to_timestamped_log(tmp_path):
    (tmp_path / "log.txt").write_text(_log(0, train=True, finished=False))
    (tmp_path / "log.txt-2024-01-01-00-00-00").write_text(_log(85.5, train=True))
    res = read_run(str(tmp_path))
    assert res.accuracy == 85.5 and res.path.endswith("log.txt-2024-01-01-00-00-00")


# ---------------------------------------------------------------- full report
def _tree(root):
    base = {1: 90.0, 2: 91.0, 3: 92.0}
    new = {1: 70.0, 2: 71.5, 3: 72.0}
    for ds in ("eurosat", "dtd"):
        for s in (1, 2, 3):
            _put(root, "train_base", ds, s, _log(base[s], train=True))
            _put(root, "test_new", ds, s, _log(new[s]))
    ivlp = CFG + "_ivlp"
    for s in (1, 2, 3):
        _put(root, "train_base", "eurosat", s, _log(base[s] - 1, train=True, end="Finished training"), cfg=ivlp)
        if s != 3:
            _put(root, "test_new", "eurosat", s, _log(new[s] - 2), cfg=ivlp)  # seed 3 new missing
        _put(root, "train_base", "dtd", s, _log(base[s] - 2, train=True), cfg=ivlp)  # no new at all
    _put(root, "train_base", "dtd", 3, _log(0, train=True, finished=False), cfg=ivlp)  # crashed seed
    return base, new


def test_report_tables_and_files(tmp_path, capsys):
    root = str(tmp_path / "output")
    base, new = _tree(root)
    assert report_main([root]) == 0
    out = capsys.readouterr().out
    for name in ("report.md", "report.csv", "report.png"):
        assert os.path.getsize(os.path.join(root, name)) > 0
    rows = list(csv.DictReader(open(os.path.join(root, "report.csv"))))
    by = {(r["config"], r["dataset"]): r for r in rows}
    b = sum(base.values()) / 3
    n = sum(new.values()) / 3
    main = by[(CFG, "eurosat")]
    assert float(main["base_mean"]) == pytest.approx(b, abs=1e-4)
    assert float(main["new_mean"]) == pytest.approx(n, abs=1e-4)
    assert float(main["hm"]) == pytest.approx(harmonic_mean(b, n), abs=1e-4)
    assert main["partial"] == "0" and main["base_n"] == "3"
    assert float(main["base_std"]) == pytest.approx(0.8165, abs=1e-4)  # population std
    avg = by[(CFG, "average")]
    assert float(avg["hm"]) == pytest.approx(harmonic_mean(b, n), abs=1e-4) and avg["base_n"] == "2"
    # partial seeds are shown with n= and marked; the missing new run and the crash are listed
    ivlp = CFG + "_ivlp"
    assert by[(ivlp, "eurosat")]["new_n"] == "2" and by[(ivlp, "eurosat")]["partial"] == "1"
    assert float(by[(ivlp, "eurosat")]["new_mean"]) == pytest.approx((68.0 + 69.5) / 2, abs=1e-4)
    assert by[(ivlp, "dtd")]["hm"] == "" and by[(ivlp, "dtd")]["base_n"] == "2"
    assert (ivlp, "average") not in by  # only eurosat has both base and new: no average over one dataset
    md = open(os.path.join(root, "report.md")).read()
    assert "(n=2)†" in md and "Missing or partial runs" in md
    assert "eurosat seed3 new: run missing" in md
    assert "dtd seed3 base: training did not finish" in md
    assert "dtd: no new-class result" in md
    assert "80.49" in md and "PromptSRC" in md
    assert "Wrote" in out and "| EuroSAT" in out


def test_report_on_base2new_dir_and_out(tmp_path):
    root = str(tmp_path / "output")
    _tree(root)
    out_dir = str(tmp_path / "rep")
    assert report_main([os.path.join(root, "base2new"), "--out", out_dir, "--no-plot"]) == 0
    assert sorted(os.listdir(out_dir)) == ["report.csv", "report.md"]
    assert report_main([str(tmp_path / "empty_does_not_exist")]) == 2
    os.makedirs(tmp_path / "empty")
    assert report_main([str(tmp_path / "empty")]) == 1


def test_published_numbers():
    pub = load_published()
    assert len(pub["prometar"]["hm"]) == 11 and pub["prometar"]["hm"]["eurosat"] == 85.30
    avg = pub["prometar"]["average"]
    assert harmonic_mean(avg["base"], avg["new"]) == pytest.approx(avg["hm"], abs=0.01)
    for name in ("CoOp", "CoCoOp", "MaPLe", "IVLP", "PromptSRC", "CLIP (zero-shot)"):
        v = pub["averages"][name]
        assert harmonic_mean(v["base"], v["new"]) == pytest.approx(v["hm"], abs=0.02), name


# ---------------------------------------------------------------- what the report shows (issue: a sweep's report)
def _one_seed_one_dataset(root):
    _put(root, "train_base", "eurosat", 1, _log(90.5, train=True))
    _put(root, "test_new", "eurosat", 1, _log(70.25))


def test_one_seed_one_dataset_has_no_std_and_no_average(tmp_path, capsys):
    root = str(tmp_path / "output")
    _one_seed_one_dataset(root)
    assert report_main([root]) == 0
    out = capsys.readouterr().out
    md = open(os.path.join(root, "report.md")).read()
    for text in (md, out):
        assert "± 0.00" not in text and not [ln for ln in text.splitlines() if ln.startswith("| ") and "±" in ln]
        assert "90.50" in text and "70.25" in text and "n=1" in text
        assert "| Average" not in text
    rows = list(csv.DictReader(open(os.path.join(root, "report.csv"))))
    assert [r["dataset"] for r in rows] == ["eurosat"] and rows[0]["base_std"] == "" and rows[0]["hm_seed_std"] == ""
    assert "No average: one dataset" in md


def test_bar_figure_error_bars_values_and_range(tmp_path):
    from prometar.report import scan_base2new, summarize
    from prometar.report.plots import bar_figure

    root = str(tmp_path / "output")
    base, new = _tree(root)
    reports = summarize(scan_base2new(os.path.join(root, "base2new")))
    fig = bar_figure(reports, load_published())
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"DTD", "EuroSAT", "Average (2 datasets)"}
    ax = axes["EuroSAT"]
    mean, std = sum(base.values()) / 3, 0.816497
    bars = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    segments = [seg for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    assert any(abs(s[0][1] - (mean - std)) < 1e-3 and abs(s[1][1] - (mean + std)) < 1e-3 for s in segments)
    texts = [t.get_text() for t in ax.texts]
    assert f"{mean:.1f}" in texts and f"{sum(new.values()) / 3:.1f}" in texts
    low, high = ax.get_ylim()
    assert low > 40 and high - low < 40  # a one-point difference is visible (not a 0-100 axis)
    # the Average panel has the paper's average over the same two datasets as a marker
    pub = load_published()["prometar"]["hm"]
    segs = [s for coll in axes["Average (2 datasets)"].collections for s in coll.get_segments()]
    assert any(abs(s[0][1] - (pub["dtd"] + pub["eurosat"]) / 2) < 1e-6 for s in segs)


def test_one_dataset_figure_has_no_average_panel(tmp_path):
    from prometar.report import scan_base2new, summarize
    from prometar.report.plots import bar_figure

    root = str(tmp_path / "output")
    _one_seed_one_dataset(root)
    fig = bar_figure(summarize(scan_base2new(os.path.join(root, "base2new"))), load_published())
    assert [ax.get_title() for ax in fig.axes] == ["EuroSAT"]
    assert not [c for ax in fig.axes for c in ax.containers if getattr(c, "errorbar", None) is not None]


def test_paper_average_over_the_same_datasets(tmp_path):
    from prometar.report import paper_average

    pub = load_published()
    value, used, full = paper_average(pub, ["eurosat", "dtd", "prometar_world"])
    assert used == ["dtd", "eurosat"] and not full
    assert value == pytest.approx((pub["prometar"]["hm"]["dtd"] + pub["prometar"]["hm"]["eurosat"]) / 2)
    assert paper_average(pub, list(pub["prometar"]["hm"])) == (pub["prometar"]["average"]["hm"],
                                                               pub["datasets"], True)
    assert paper_average(pub, ["prometar_world"]) == (None, [], False)
    root = str(tmp_path / "output")
    _tree(root)
    assert report_main([root, "--no-plot"]) == 0
    md = open(os.path.join(root, "report.md")).read()
    assert f"paper average over the 2 datasets run (DTD, EuroSAT): {value:.2f}" in md
    assert f"| {value:.2f}§" in md  # the Average row's paper cell
    rows = {(r["config"], r["dataset"]): r for r in csv.DictReader(open(os.path.join(root, "report.csv")))}
    avg = rows[(CFG, "average")]
    assert float(avg["paper_hm"]) == pytest.approx(value, abs=1e-4) and avg["paper_datasets"] == "dtd eurosat"


def test_base_new_plot_and_training_curves(tmp_path):
    import json

    from prometar.report import scan_base2new, summarize
    from prometar.report.plots import base_new_figure

    root = str(tmp_path / "output")
    _tree(root)
    for seed in (1, 2):
        d = os.path.join(root, "base2new", "train_base", "eurosat", "shots_16", "ProMetaR", CFG, f"seed{seed}")
        recs = [{"epoch": e, "max_epoch": 3, "meters": {"ce": 1.0 / e, "reg_text": 0.5, "meta": 1.0},
                 "lr": {"VLPromptLearner": 0.002 / e}, "val_acc": 60.0 + e} for e in (1, 2, 3)]
        with open(os.path.join(d, "history.jsonl"), "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in recs))
    assert report_main([root]) == 0
    assert os.path.getsize(os.path.join(root, "report_base_new.png")) > 0
    curve = os.path.join(root, "curves", f"eurosat__ProMetaR__{CFG}.png")
    assert os.path.getsize(curve) > 0 and os.listdir(os.path.join(root, "curves")) == [os.path.basename(curve)]
    md = open(os.path.join(root, "report.md")).read()
    assert "(report_base_new.png)" in md and f"(curves/eurosat__ProMetaR__{CFG}.png)" in md
    fig = base_new_figure(summarize(scan_base2new(os.path.join(root, "base2new"))), load_published())
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("HM ") for t in labels) and "EuroSAT" in labels  # iso-curve labels, dataset points


# ---------------------------------------------------------------- what is averaged (issue #21)
def _config(folder, lr, seed):
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(f"OPTIM:\n  LR: {lr}\nSEED: {seed}\nOUTPUT_DIR: {folder}\n")


def test_hm_uses_only_the_seeds_having_both_halves(tmp_path):
    root = str(tmp_path / "output")
    base, new = {1: 90.0, 2: 80.0, 3: 50.0}, {1: 70.0, 2: 60.0}
    for s, b in base.items():
        _put(root, "train_base", "eurosat", s, _log(b, train=True))
    for s, n in new.items():
        _put(root, "test_new", "eurosat", s, _log(n))
    assert report_main([root, "--no-plot"]) == 0
    [row] = [r for r in csv.DictReader(open(os.path.join(root, "report.csv"))) if r["dataset"] == "eurosat"]
    assert float(row["base_mean"]) == pytest.approx(220 / 3, abs=1e-4) and row["base_n"] == "3"
    assert float(row["hm"]) == pytest.approx(harmonic_mean(85.0, 65.0), abs=1e-4)  # seeds 1 and 2 only
    assert row["partial"] == "1"
    md = open(os.path.join(root, "report.md")).read()
    assert "eurosat seed3 new: run missing" in md and "HM over the 2 seed(s) having both" in md


def test_a_cell_never_mixes_configs_nor_a_replaced_model(tmp_path):
    from prometar.engine.runfolder import sha256_file

    root = str(tmp_path / "output")
    dirs = {}
    for s, (b, lr) in {1: (90.0, 0.0025), 2: (92.0, 0.0025), 3: (10.0, 0.01)}.items():
        dirs[s] = _put(root, "train_base", "eurosat", s, _log(b, train=True))
        _config(dirs[s], lr, s)
        os.makedirs(os.path.join(dirs[s], "VLPromptLearner"))
        with open(os.path.join(dirs[s], "VLPromptLearner", "model.pth.tar-10"), "w") as f:
            f.write(f"model of seed {s}")
        test = _put(root, "test_new", "eurosat", s, _log(70.0 + s))
        model = os.path.join(dirs[s], "VLPromptLearner", "model.pth.tar-10")
        with open(os.path.join(test, "provenance.json"), "w") as f:
            f.write('{"runs": [{"model": {"dir": "%s", "epoch": 10, "file": "%s", "sha256": "%s"}}]}'
                    % (dirs[s], model, sha256_file(model)))
    with open(os.path.join(dirs[2], "VLPromptLearner", "model.pth.tar-10"), "w") as f:
        f.write("retrained after the evaluation")
    assert report_main([root, "--no-plot"]) == 0
    [row] = [r for r in csv.DictReader(open(os.path.join(root, "report.csv"))) if r["dataset"] == "eurosat"]
    assert row["base_n"] == "2" and float(row["base_mean"]) == pytest.approx(91.0, abs=1e-4)  # seed 3 left out
    assert row["new_n"] == "2" and float(row["new_mean"]) == pytest.approx((71.0 + 73.0) / 2, abs=1e-4)
    assert float(row["hm"]) == pytest.approx(harmonic_mean(90.0, 71.0), abs=1e-4)  # only seed 1 has both
    md = open(os.path.join(root, "report.md")).read()
    assert f"eurosat base seed3: left out, made with another config than seed1 ({dirs[3]} vs {dirs[1]}: " \
           f"OPTIM.LR: 0.0025 -> 0.01)" in md
    assert "eurosat new seed2: left out, the model file it evaluated" in md and "has been replaced since" in md


def _xd_tree(root):
    def put(path, acc, train=False):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "log.txt"), "w") as f:
            f.write(_log(acc, train=train))
    tag = f"{CFG}_16shots"
    acc = {}
    for s in (1, 2):
        put(os.path.join(root, "imagenet", "ProMetaR", tag, f"seed{s}"), 70.0 + s, train=True)
        for i, t in enumerate(("imagenet_r", "eurosat", "caltech101", "imagenetv2")):
            if (t, s) == ("eurosat", 2):
                continue  # a missing seed: shown with n=1 and listed
            acc[(t, s)] = 40.0 + 10 * i + s
            put(os.path.join(root, "evaluation", "ProMetaR", tag, t, f"seed{s}"), acc[(t, s)])
    return acc


def test_xd_report_has_the_two_paper_tables(tmp_path):
    from prometar.report.xd import scan_xd, xd_tables

    root = str(tmp_path / "output")
    acc = _xd_tree(root)
    assert report_main([root]) == 0
    tables = {key: (header, rows) for key, _, header, rows in xd_tables(scan_xd(root))}
    header, [row] = tables["cross_dataset"]
    assert header == ["Method", "Source: ImageNet", "Caltech101", "EuroSAT", "Average"]  # the paper's order
    assert row[1] == "71.50 ± 0.50" and row[3] == f"{acc[('eurosat', 1)]:.2f} (n=1)†"
    caltech = (acc[("caltech101", 1)] + acc[("caltech101", 2)]) / 2
    assert row[4] == f"{(caltech + acc[('eurosat', 1)]) / 2:.2f} (2 of 10)‡"
    header, [row] = tables["domain_generalisation"]
    assert header == ["Method", "Source: ImageNet", "ImageNet-V2", "ImageNet-R", "Average"]
    rows = {(r["table"], r["dataset"]): r for r in csv.DictReader(open(os.path.join(root, "report.csv")))}
    assert float(rows[("domain_generalisation", "imagenet_r")]["accuracy_mean"]) == 40.0 + 1.5
    assert rows[("cross_dataset", "eurosat")]["accuracy_n"] == "1" and rows[("cross_dataset", "eurosat")]["partial"] == "1"
    md = open(os.path.join(root, "report.md")).read()
    assert "eurosat seed2: run missing" in md and "(report_xd.png)" in md
    assert os.path.getsize(os.path.join(root, "report_xd.png")) > 0


def test_fewshot_report_table_and_average(tmp_path):
    from prometar.report.fewshot import fewshot_table, scan_fewshot

    root = str(tmp_path / "output")
    for d, offset in (("eurosat", 0.0), ("dtd", 10.0)):
        for k in (1, 2, 4):
            if (d, k) == ("dtd", 4):
                continue
            for s in (1, 2):
                path = os.path.join(root, "fewshot", d, "ProMetaR", f"{CFG}_{k}shots", f"seed{s}")
                os.makedirs(path)
                with open(os.path.join(path, "log.txt"), "w") as f:
                    f.write(_log(30.0 + 5 * k + offset + s, train=True))
    assert report_main([root]) == 0
    [method] = scan_fewshot(root)
    header, rows = fewshot_table(method)
    assert header == ["Dataset", "1 shot", "2 shots", "4 shots"]
    assert rows[0] == ["DTD", "46.50 ± 0.50", "51.50 ± 0.50", "—"]
    assert rows[-1] == ["Average", "41.50", "46.50", "51.50 (1 ds)‡"]  # dtd has no 4-shot run
    assert os.path.getsize(os.path.join(root, "report_fewshot.png")) > 0
