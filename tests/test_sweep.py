"""`prometar sweep`: job lists, the shared "finished" rule, the scheduler and the never-stale plan (a fake
train.py), and real 1-dataset x 2-seed base-to-new sweeps (small CLIP, generated data) on local workers,
submitit's local executor and a real one-node Slurm cluster, each checked against the same jobs run one by one
(the protocols' outcomes are in tests/test_protocols_sweep.py)."""
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from fake_data import make_fake_dataset

from prometar.cli import train_main
from prometar.sweep.backends import LocalBackend, threads_per_job
from prometar.sweep.cli import sweep_main
from prometar.sweep.fresh import ChangedRuns
from prometar.sweep.jobs import ExtraClash, Launcher, SweepSpec, build_jobs, default_launcher, job_config
from prometar.sweep.runner import Progress, Sweep, format_duration
from prometar.sweep.state import checkpoint_file, is_finished, latest_epoch, run_state

REPO = Path(__file__).resolve().parent.parent
CFG = "vit_b16_c2_ep10_batch4_4+4ctx"
TRAIN_LOG = "epoch [1/1] batch [1/1] time 0.1 (0.1)\nFinish training\n=> result\n* accuracy: {acc}%\n"


# ------------------------------------------------------------------------------------------------ job lists
def test_base2new_jobs_are_the_scripts_calls(tmp_path):
    launcher = default_launcher("python")
    jobs = build_jobs(SweepSpec(data=str(tmp_path / "data"), output=str(tmp_path / "out"),
                                datasets=["eurosat", "dtd"], seeds=[1, 2], extra=["--engine", "builtin", "A.B", "1"]),
                      launcher)
    assert len(jobs) == 8 and [j.phase for j in jobs[:2]] == ["train_base", "test_new"]
    train, test = jobs[0], jobs[1]
    tail = f"eurosat/shots_16/ProMetaR/{CFG}/seed1"
    assert train.output_dir == str(tmp_path / "out/base2new/train_base" / tail)
    assert test.depends_on == [train.id] and test.model_dir == train.output_dir and not train.depends_on
    assert launcher.entry == ["train.py"] and launcher.cwd == str(REPO)
    assert train.train_args() == [
        "--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "ProMetaR",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", f"configs/trainers/ProMetaR/{CFG}.yaml", "--output-dir", train.output_dir,
        "--engine", "builtin", "A.B", "1", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
    args = test.train_args(7)
    i = args.index("--model-dir")
    assert args[i:i + 5] == ["--model-dir", train.output_dir, "--load-epoch", "7", "--eval-only"]
    assert args[-6:] == ["A.B", "1", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]

    xd = build_jobs(SweepSpec(protocol="xd", data="d", output=str(tmp_path / "o"), seeds=[2]), launcher)
    assert len(xd) == 15 and xd[0].output_dir == str(tmp_path / f"o/imagenet/ProMetaR/{CFG}_16shots/seed2")
    assert xd[-1].output_dir == str(tmp_path / f"o/evaluation/ProMetaR/{CFG}_16shots/imagenet_r/seed2")
    assert xd[-1].tail == ["DATASET.SUBSAMPLE_CLASSES", "all"] and xd[-1].depends_on == [xd[0].id]
    only_test = build_jobs(SweepSpec(protocol="xd", data="d", seeds=[2], phase="test", datasets=["imagenet_a"],
                                     load_epoch=10), launcher)
    assert [j.phase for j in only_test] == ["xd_test"] and only_test[0].depends_on == []
    assert "--load-epoch" in only_test[0].train_args() and "10" in only_test[0].train_args()

    few = build_jobs(SweepSpec(protocol="fewshot", data="d", output=str(tmp_path / "o"), datasets=["dtd"], seeds=[3]),
                     launcher)
    assert [j.output_dir for j in few] == [str(tmp_path / f"o/fewshot/dtd/ProMetaR/{CFG}_{k}shots/seed3")
                                           for k in (1, 2, 4, 8, 16)]  # CoOp's few-shot layout, under fewshot/
    assert few[0].tail == ["DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "all"] and not few[0].eval_only
    with pytest.raises(ValueError, match="no evaluation jobs"):
        build_jobs(SweepSpec(protocol="fewshot", data="d", phase="test"), launcher)
    # a job's identity is its full config, merged as train.py merges it
    [cfg_job, _] = build_jobs(SweepSpec(data="d", datasets=["eurosat"], seeds=[2], shots=4,
                                        extra=["--engine", "builtin", "OPTIM.LR", "0.5"]), launcher)
    cfg = job_config(cfg_job, launcher.cwd)
    assert (cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.SEED) == ("EuroSAT", 4, "base", 2)
    assert cfg.OPTIM.LR == 0.5 and cfg.OUTPUT_DIR == cfg_job.output_dir and cfg.TRAINER.PROMETAR.N_CTX_TEXT == 4
    with pytest.raises(FileNotFoundError, match="configs/datasets/no_such.yaml"):
        build_jobs(SweepSpec(data="d", datasets=["no_such"]), launcher)
    with pytest.raises(ValueError, match="duplicate jobs"):
        build_jobs(SweepSpec(data="d", datasets=["dtd"], seeds=[1, 1]), launcher)
    with pytest.raises(ValueError, match="--data"):
        build_jobs(SweepSpec(data="", datasets=["dtd"]), launcher)


def test_finished_rule_is_the_reports(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert not is_finished(str(run)) and run_state(str(run)).status == "no-log"
    # a validation accuracy printed before the end of training does not count
    (run / "log.txt").write_text("epoch [1/2] batch [1/1]\n=> result\n* accuracy: 40.0%\nepoch [2/2] batch [1/1]\n")
    assert run_state(str(run)).status == "unfinished"
    (run / "log.txt-2026-01-01-00-00-00").write_text(TRAIN_LOG.format(acc=55.5))  # a re-run's log
    st = run_state(str(run))
    assert st.finished and st.accuracy == 55.5 and st.log.endswith("log.txt-2026-01-01-00-00-00")
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "log.txt").write_text("Loading weights\n=> result\n* accuracy: 70.25%\n")
    assert is_finished(str(ev)) and run_state(str(ev)).accuracy == 70.25

    assert latest_epoch(str(run)) is None
    for part in ("GradientModulator", "VLPromptLearner"):
        (run / part).mkdir()
        (run / part / "checkpoint").write_text("model.pth.tar-3\n")
        (run / part / "model.pth.tar-3").write_bytes(b"x")
    assert latest_epoch(str(run)) == 3
    assert checkpoint_file(str(run), 3) == str(run / "VLPromptLearner/model.pth.tar-3")
    assert checkpoint_file(str(run), 2) is None

    from prometar.sweep.state import main as state_main

    assert state_main([str(run), str(ev)]) == 0 and state_main([str(run), str(tmp_path)]) == 1
    assert state_main(["--epoch", str(run)]) == 0 and capsys.readouterr().out.strip() == "3"
    # the scripts use the same rule through the module's command line
    r = subprocess.run([sys.executable, "-m", "prometar.sweep.state", str(ev)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 0, r.stderr


def test_threads_and_gpu_placement(tmp_path):
    assert threads_per_job(1, cores=2) == 2 and threads_per_job(2, cores=2) == 1 and threads_per_job(3, cores=2) == 1
    assert threads_per_job(3, cores=16) == 5
    from prometar.sweep.cli import make_backend, sweep_parser

    backend = make_backend(sweep_parser().parse_args(["--gpus", "0,1", "--jobs-per-gpu", "2"]), str(tmp_path))
    assert backend.slots == ["0", "1", "0", "1"] and backend.parallelism == 4
    cpu = make_backend(sweep_parser().parse_args(["--workers", "2", "--threads", "3"]), str(tmp_path))
    assert cpu.slots == [None, None] and cpu.threads == 3

    from prometar.sweep.backends import Launch

    code = ("import os; e = os.environ; "
            "print(e.get('CUDA_VISIBLE_DEVICES'), e['OMP_NUM_THREADS'], e['MKL_NUM_THREADS'])")
    local = LocalBackend(["0", "1"], threads=3)
    outs = [str(tmp_path / f"o{i}.txt") for i in range(2)]
    local.submit([Launch(f"j{i}", 0, [sys.executable, "-c", code], str(tmp_path), {}, outs[i]) for i in range(2)])
    assert local.capacity() == 0
    ended = []
    while len(ended) < 2:
        ended += local.poll()
        time.sleep(0.02)
    assert all(code == 0 for _, code, _ in ended)
    assert [Path(o).read_text().splitlines()[-1] for o in outs] == ["0 3 3", "1 3 3"]


# ------------------------------------------------------------------------------------------------ scheduler
FAKE_TRAIN = r"""
# A stand-in for train.py that leaves what the engines leave (config.yaml, the learner file, provenance.json with
# the model an evaluation loaded, log.txt), without torch.
import hashlib, json, os, sys, time
from prometar.config import dump_cfg, load_cfg
from prometar.launch import train_parser
args = train_parser().parse_args(sys.argv[1:])
out, seed = args.output_dir, args.seed
os.makedirs(out, exist_ok=True)
counter = os.path.join(out, "attempts")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
fail = os.environ.get("FAKE_FAIL", "")
if fail and ("/" + fail.split(":")[0] + "/") in out and n <= int(fail.split(":")[1]):
    print("simulated failure", file=sys.stderr)
    sys.exit(1)
dump_cfg(load_cfg(args.dataset_config_file, args.config_file, args.opts, args=args), os.path.join(out, "config.yaml"))
acc = 50 + seed + (10 if "/dtd/" in out else 0) + (5 if args.eval_only else 0)
run = {"argv": sys.argv[1:]}
if args.eval_only:
    model = os.path.join(args.model_dir, "VLPromptLearner", "model.pth.tar-%d" % args.load_epoch)
    sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
    run["model"] = {"dir": args.model_dir, "epoch": args.load_epoch, "file": model, "sha256": sha}
    open(os.path.join(out, "log.txt"), "a").write("=> result\n* accuracy: %s%%\n" % acc)
else:
    os.makedirs(os.path.join(out, "VLPromptLearner"), exist_ok=True)
    open(os.path.join(out, "VLPromptLearner", "model.pth.tar-1"), "w").write("model %d %s" % (n, time.time()))
    open(os.path.join(out, "VLPromptLearner", "checkpoint"), "w").write("model.pth.tar-1\n")
    open(os.path.join(out, "log.txt"), "a").write(TRAIN_LOG.format(acc=acc))
json.dump({"runs": [run]}, open(os.path.join(out, "provenance.json"), "w"))
""".replace("TRAIN_LOG", repr(TRAIN_LOG))


def _fake_sweep(tmp_path, retries=1, workers=2, extra=(), phase="all", rerun_changed=False):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    launcher = Launcher([sys.executable], [str(script)], str(tmp_path))
    jobs = build_jobs(SweepSpec(data=str(tmp_path / "data"), output=str(tmp_path / "out"), datasets=["eurosat", "dtd"],
                                seeds=[1, 2], extra=list(extra), phase=phase), launcher)
    stream = io.StringIO()
    sweep = Sweep(jobs, LocalBackend([None] * workers, 1), launcher, str(tmp_path / "out/sweeps/t"), retries=retries,
                  protocol="base2new", stream=stream, progress_interval=0, poll_s=0.02, tty=False,
                  rerun_changed=rerun_changed)
    return sweep, stream


def _attempts(out_dir):
    return int(Path(out_dir, "attempts").read_text())


def test_scheduler_runs_in_dependency_order_with_progress_summary_and_skips_on_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.1")
    sweep, stream = _fake_sweep(tmp_path)
    assert sweep.run() == 0
    text = stream.getvalue()
    summary = json.loads(Path(sweep.summary_path).read_text())
    assert summary["counts"]["done"] == 8 and summary["sweep"]["state"] == "done"
    by_id = {j["id"]: j for j in summary["jobs"]}
    for rec in sweep.records.values():
        j = by_id[rec.job.id]
        assert j["state"] == "done" and j["attempts"] == 1 and j["backend_id"].isdigit() and j["wall_s"] > 0
        assert "--output-dir " + rec.job.output_dir in j["command"] and j["log"].endswith("log.txt")
        expected = 50 + rec.job.seed + (10 if rec.job.dataset == "dtd" else 0) + (5 if rec.job.eval_only else 0)
        assert j["accuracy"] == expected
        if rec.job.eval_only:  # started only after its training job ended
            dep = sweep.records[rec.job.depends_on[0]]
            assert "--load-epoch 1 --eval-only" in j["command"]
            assert text.index(f"Start {rec.job.label()}") > text.index(f"Done {dep.job.label()}")
    assert "8/8 done | 0 running | 0 failed | 0 queued" in text and "ETA 0:00:0" in text

    again, stream2 = _fake_sweep(tmp_path)
    assert again.run() == 0
    assert stream2.getvalue().count("Skip ") == 8 and "Start " not in stream2.getvalue()
    assert all(_attempts(r.job.output_dir) == 1 for r in again.records.values())
    summary = json.loads(Path(again.summary_path).read_text())
    assert summary["counts"]["skipped"] == 8 and all(j["wall_s"] > 0 and j["backend_id"] for j in summary["jobs"])


def test_failed_job_is_retried_then_listed_and_its_evaluation_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "dtd:5")
    sweep, stream = _fake_sweep(tmp_path, retries=2)
    assert sweep.run() == 1
    text = stream.getvalue()
    failed = [r for r in sweep.records.values() if r.state == "failed"]
    assert sorted(r.job.id for r in failed) == sorted(r.job.id for r in sweep.records.values()
                                                      if r.job.phase == "train_base" and r.job.dataset == "dtd")
    assert all(_attempts(r.job.output_dir) == 3 and r.attempts == 3 and r.error == "exit code 1" for r in failed)
    assert text.count("Retry train_base dtd") == 4 and "Failed jobs (2):" in text
    for r in failed:
        assert f"output: {r.stdout}" in text and Path(r.stdout).read_text().count("simulated failure") == 3
    blocked = [r for r in sweep.records.values() if r.state == "blocked"]
    assert len(blocked) == 2 and all(r.job.dataset == "dtd" and r.job.eval_only for r in blocked)
    assert "Not run because a job they need failed (2):" in text
    summary = json.loads(Path(sweep.summary_path).read_text())
    assert summary["counts"] == {"done": 4, "skipped": 0, "running": 0, "queued": 0, "failed": 2, "blocked": 2,
                                 "interrupted": 0}

    monkeypatch.setenv("FAKE_FAIL", "")  # the cause is fixed: the re-run does only what is missing
    again, stream2 = _fake_sweep(tmp_path, retries=0)
    assert again.run() == 0 and stream2.getvalue().count("Skip ") == 4
    assert all(_attempts(r.job.output_dir) == (4 if r.job.dataset == "dtd" and not r.job.eval_only else 1)
               for r in again.records.values())


def test_a_changed_config_is_refused_then_rerun_changed_moves_it_aside_and_its_evaluation_follows(tmp_path):
    first, _ = _fake_sweep(tmp_path)
    assert first.run() == 0
    # the same sweep with another option: every folder was made with another config, nothing starts
    changed, stream = _fake_sweep(tmp_path, extra=["OPTIM.LR", "0.5"])
    with pytest.raises(ChangedRuns) as exc:
        changed.run()
    message = str(exc.value)
    assert "Start " not in stream.getvalue() and "--rerun-changed" in message
    for rec in changed.records.values():
        assert rec.job.output_dir in message and _attempts(rec.job.output_dir) == 1
    assert len([ln for ln in message.splitlines() if ln.strip().startswith("OPTIM.LR: ")]) == 8
    assert not list(Path(tmp_path, "out").rglob("*.changed-*"))
    # --rerun-changed: each folder is moved aside (kept, with its result) and run again
    again, stream = _fake_sweep(tmp_path, extra=["OPTIM.LR", "0.5"], rerun_changed=True)
    assert again.run() == 0
    assert stream.getvalue().count("made with another config (OPTIM.LR: ") == 8
    for rec in again.records.values():
        [old] = Path(rec.job.output_dir).parent.glob(Path(rec.job.output_dir).name + ".changed-*")
        assert _attempts(old) == 1 and (old / "log.txt").is_file() and _attempts(rec.job.output_dir) == 1
        assert yaml.safe_load(Path(rec.job.output_dir, "config.yaml").read_text())["OPTIM"]["LR"] == 0.5
    # a training that runs again (its folder is gone) makes its evaluation run again, the rest is skipped
    train = next(r.job for r in again.records.values() if r.job.phase == "train_base")
    evaluation = next(r.job for r in again.records.values() if r.job.depends_on == [train.id])
    shutil.rmtree(train.output_dir)
    third, stream = _fake_sweep(tmp_path, extra=["OPTIM.LR", "0.5"])
    assert third.run() == 0
    assert {r.job.id for r in third.records.values() if r.state == "done"} == {train.id, evaluation.id}
    assert f"Re-run {evaluation.label()}: the model it evaluated ({train.id}) is trained again" in stream.getvalue()
    # across invocations: a training re-run by an earlier `--phase train` leaves its evaluation stale
    other = next(r.job for r in again.records.values() if r.job.phase == "train_base" and r.job.id != train.id)
    shutil.rmtree(other.output_dir)
    assert _fake_sweep(tmp_path, extra=["OPTIM.LR", "0.5"], phase="train")[0].run() == 0
    fourth, stream = _fake_sweep(tmp_path, extra=["OPTIM.LR", "0.5"])
    assert fourth.run() == 0
    [ran] = [r.job for r in fourth.records.values() if r.state == "done"]
    assert ran.depends_on == [other.id] and "is not the one it evaluated" in stream.getvalue()


def test_extra_args_that_set_what_the_sweep_sets_are_refused(tmp_path, capsys):
    launcher = default_launcher("python")
    for extra, names in ((["DATASET.NUM_SHOTS", "4"], ("DATASET.NUM_SHOTS 4", "--shots")),
                         (["--seed", "3"], ("--seed 3", "--seeds")),
                         (["--engine", "builtin", "DATASET.SUBSAMPLE_CLASSES", "all"], ("DATASET.SUBSAMPLE_CLASSES",
                                                                                        "--test-sub")),
                         (["--output-dir", "x"], ("--output-dir x", "--output")),
                         (["OUTPUT_DIR", "x"], ("OUTPUT_DIR x", "--output")),
                         (["--load-epoch", "2"], ("--load-epoch 2", "--load-epoch")),
                         (["--root", "r"], ("--root r", "--data")),
                         (["DATASET.ROOT", "r"], ("DATASET.ROOT r", "--data")),
                         (["SEED", "2"], ("SEED 2", "--seeds"))):
        with pytest.raises(ExtraClash) as exc:
            build_jobs(SweepSpec(data="d", datasets=["dtd"], seeds=[1], extra=extra), launcher)
        assert all(n in str(exc.value) for n in names), (extra, str(exc.value))
    build_jobs(SweepSpec(data="d", datasets=["dtd"], extra=["--engine", "builtin", "OPTIM.MAX_EPOCH", "2"]), launcher)
    out = tmp_path / "out"
    assert sweep_main(["fewshot", "--data", "d", "--output", str(out), "--datasets", "dtd", "--", "DATASET.NUM_SHOTS",
                       "4"]) == 2
    assert "DATASET.NUM_SHOTS 4 after -- clashes with the sweep's --shots" in capsys.readouterr().err
    assert not out.exists()


def test_second_driver_on_the_same_sweep_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    first, _ = _fake_sweep(tmp_path)
    t = threading.Thread(target=first.run)
    t.start()
    try:
        deadline = time.time() + 20
        while not any(r.state == "running" for r in first.records.values()) and time.time() < deadline:
            time.sleep(0.02)
        second, _ = _fake_sweep(tmp_path)
        with pytest.raises(RuntimeError, match="another `prometar sweep` runs this sweep"):
            second.run()
    finally:
        t.join()


def test_sweep_runs_where_flock_is_unsupported_and_still_refuses_a_second_driver(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):  # as on NFS / Lustre mounted without locks
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    first, stream = _fake_sweep(tmp_path, workers=1)
    jobs = [first.records[i].job for i in first.order[:2]]
    first.records = {j.id: first.records[j.id] for j in jobs}
    first.order = [j.id for j in jobs]
    assert first.run() == 0 and all(r.state == "done" for r in first.records.values())
    assert not Path(first.sweep_dir, ".lock").exists()  # the lock file is removed at the end
    Path(first.sweep_dir, ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live driver's lock
    second, _ = _fake_sweep(tmp_path)
    with pytest.raises(RuntimeError, match="another `prometar sweep` runs this sweep"):
        second.run()


def test_tasks_of_a_killed_slurm_driver_that_still_run_are_not_started_twice(tmp_path):
    sweep, _ = _fake_sweep(tmp_path)
    first = sweep.order[0]
    Path(sweep.summary_path).parent.mkdir(parents=True)
    Path(sweep.summary_path).write_text(json.dumps({"jobs": [{"id": first, "state": "running", "backend_id": "41_0"}]}))

    class StillQueued(LocalBackend):
        def still_active(self, ids):
            return [i for i in ids if i == "41_0"]

    sweep.backend = StillQueued([None], 1)
    with pytest.raises(RuntimeError, match=r"still queued or running \(41_0: " + re.escape(first)):
        sweep.run()
    assert not Path(sweep.records[first].job.output_dir).exists()  # nothing started


def test_progress_line_on_a_terminal_rewrites_one_line():
    stream = io.StringIO()
    p = Progress(stream, tty=True)
    p.update("[sweep] 1/2 done")
    p.event("[sweep] Done x")
    p.update("[sweep] 2/2 done")
    p.close()
    assert stream.getvalue() == "\r\x1b[K[sweep] 1/2 done\r\x1b[K[sweep] Done x\n\r\x1b[K[sweep] 2/2 done\n"
    assert format_duration(3725.4) == "1:02:05" and format_duration(None) == "--"


# ------------------------------------------------------------------------------------------------ real sweeps
EPOCHS = 3
KILLED = f"base2new/train_base/eurosat/shots_4/ProMetaR/{CFG}/seed2"  # the job killed / cancelled mid-run


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_clip_path):
    root = tmp_path_factory.mktemp("sweep_data")
    make_fake_dataset("EuroSAT", str(root), n_classes=6, n_per_class=12, image_size=40)
    extra = ["--engine", "builtin", "--device", "cpu", "MODEL.BACKBONE.NAME", str(small_clip_path),
             "INPUT.SIZE", "(32, 32)", "TRAINER.PROMETAR.PREC", "fp32", "TRAINER.PROMETAR.PROMPT_DEPTH_TEXT", "2",
             "TRAINER.PROMETAR.PROMPT_DEPTH_VISION", "2", "OPTIM.MAX_EPOCH", str(EPOCHS), "OPTIM_VNET.MAX_EPOCH",
             str(EPOCHS), "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "16"]
    return {"data": str(root), "extra": extra}


def _sweep_argv(setup, out, *flags):
    return ["base2new", "--data", setup["data"], "--output", str(out), "--datasets", "eurosat", "--seeds",
            "1", "2", "--shots", "4", "--threads", "1", "--no-report", "--progress-interval", "600", *flags, "--",
            *setup["extra"]]


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    """The same 4 jobs run one by one, in this process, through train.py's entry point."""
    out = tmp_path_factory.mktemp("one_by_one")
    launcher = default_launcher()
    jobs = build_jobs(SweepSpec(data=setup["data"], output=str(out), datasets=["eurosat"], seeds=[1, 2],
                                shots=4, extra=setup["extra"]), launcher)
    cwd = os.getcwd()
    os.chdir(launcher.cwd)
    try:
        for job in jobs:
            assert train_main(job.train_args(EPOCHS)) == 0, job.id
    finally:
        os.chdir(cwd)
    return _results(out)


def _results(out):
    """job folder -> (accuracy, {checkpoint file: state_dict}) for every run folder under ``out``."""
    res = {}
    for log in sorted(Path(out).glob("base2new/*/*/*/*/*/seed*/log.txt")):
        run = log.parent
        ckpts = {str(p.relative_to(run)): torch.load(p, weights_only=True)["state_dict"]
                 for p in sorted(run.glob("*/model.pth.tar-*"))}
        res[str(run.relative_to(out))] = (run_state(str(run)).accuracy, ckpts)
    return res


def _assert_same(out, reference):
    got = _results(out)
    assert sorted(got) == sorted(reference) and len(got) == 4
    for run, (acc, ckpts) in reference.items():
        assert got[run][0] == acc, run
        assert sorted(got[run][1]) == sorted(ckpts) and (ckpts or "test_new" in run), run
        for name, state in ckpts.items():
            for key, value in state.items():
                assert torch.equal(got[run][1][name][key], value), (run, name, key)


def _summary(out):
    [path] = Path(out, "sweeps").glob("*/summary.json")
    return {j["id"]: j for j in json.loads(path.read_text())["jobs"]}


def _when_mid_run(out, action, timeout=120):
    """Thread: once the killed job has saved its first epoch (and is still training), call action(summary entry)."""
    pointer = Path(out, KILLED, "GradientModulator", "checkpoint")  # saved after the prompt learner's
    box = {}

    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pointer.is_file() and pointer.read_text().strip() == "model.pth.tar-1":
                entry = _summary(out)[KILLED]
                box["finished_before"] = is_finished(str(Path(out, KILLED)))
                action(entry)
                box["done"] = True
                return
            time.sleep(0.01)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t, box


def _rerun_resumes(out, first_logs):
    """After the re-run: finished jobs were not redone, the killed one resumed from its checkpoint."""
    for run, names in first_logs.items():
        now = sorted(p.name for p in Path(out, run).glob("log.txt*"))
        if run == KILLED or run == KILLED.replace("train_base", "test_new"):
            continue
        assert now == names, run  # not re-run: no second log
    logs = sorted(Path(out, KILLED).glob("log.txt-*"))
    assert logs and "Previous epoch: " in logs[-1].read_text() and "will resume training" in logs[-1].read_text()


def _logs(out):
    return {str(p.parent.relative_to(out)): sorted(q.name for q in p.parent.glob("log.txt*"))
            for p in Path(out).glob("base2new/*/*/*/*/*/seed*/log.txt")}


def test_local_workers_equal_one_by_one_and_a_killed_worker_resumes(setup, reference, tmp_path, capsys):
    out = tmp_path / "out"
    watcher, box = _when_mid_run(out, lambda entry: os.kill(int(entry["backend_id"]), signal.SIGKILL))
    assert sweep_main(_sweep_argv(setup, out, "--workers", "2", "--retries", "0")) == 1
    watcher.join(5)
    assert box.get("done") and not box["finished_before"]
    summary = _summary(out)
    assert summary[KILLED]["state"] == "failed" and "killed by signal 9" in summary[KILLED]["error"]
    assert summary[KILLED.replace("train_base", "test_new")]["state"] == "blocked"
    assert sum(j["state"] == "done" for j in summary.values()) == 2
    printed = capsys.readouterr().out
    assert "Failed jobs (1):" in printed and f"log: {out / KILLED / 'log.txt'}" in printed
    first_logs = _logs(out)

    assert sweep_main(_sweep_argv(setup, out, "--workers", "2")) == 0
    summary = _summary(out)
    assert sum(j["state"] == "skipped" for j in summary.values()) == 2
    assert sum(j["state"] == "done" for j in summary.values()) == 2
    _rerun_resumes(out, first_logs)
    _assert_same(out, reference)


def test_submitit_local_executor_equals_one_by_one(setup, reference, tmp_path):
    pytest.importorskip("submitit", reason="submitit not installed (pip install -e \".[slurm]\")")
    out = tmp_path / "out"
    assert sweep_main(_sweep_argv(setup, out, "--backend", "submitit-local", "--workers", "2")) == 0
    summary = _summary(out)
    assert all(j["state"] == "done" and j["backend_id"] for j in summary.values())
    assert list(Path(out, "sweeps").glob("*/submitit"))
    _assert_same(out, reference)


def _slurm_unavailable():
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} not found: no Slurm here (as root, .ci/slurm-up.sh starts a one-node cluster)"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = r.stdout.split()
    if r.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return f"no usable Slurm node (sinfo: {r.stdout.strip() or r.stderr.strip()}); run .ci/slurm-up.sh as root"
    return ""


@pytest.fixture
def slurm_cluster():
    """Skips (saying why) unless submitit is installed and a Slurm node takes jobs; before the costly fixtures."""
    pytest.importorskip("submitit", reason="submitit not installed (pip install -e \".[slurm]\")")
    reason = _slurm_unavailable()
    if reason:
        pytest.skip(reason)


def test_real_slurm_cancel_one_task_then_rerun_equals_one_by_one(slurm_cluster, setup, reference, tmp_path, capsys):
    out = tmp_path / "out"
    cancelled = {}

    def scancel(entry):
        cancelled["id"] = entry["backend_id"]
        subprocess.run(["scancel", entry["backend_id"]], check=True, timeout=30)

    watcher, box = _when_mid_run(out, scancel)
    flags = ("--backend", "slurm", "--cpus-per-job", "1", "--time", "10", "--array-parallelism", "2")
    assert sweep_main(_sweep_argv(setup, out, *flags, "--retries", "0")) == 1
    watcher.join(5)
    assert box.get("done") and not box["finished_before"] and "_" in cancelled["id"]  # an array task
    summary = _summary(out)
    assert summary[KILLED]["state"] == "failed" and summary[KILLED]["backend_id"] == cancelled["id"]
    assert sum(j["state"] == "done" for j in summary.values()) == 2
    assert "Failed jobs (1):" in capsys.readouterr().out
    first_logs = _logs(out)

    assert sweep_main(_sweep_argv(setup, out, *flags)) == 0
    summary = _summary(out)
    assert sum(j["state"] == "skipped" for j in summary.values()) == 2
    assert all(j["backend_id"] for j in summary.values())  # Slurm ids (a one-job level is a plain job)
    _rerun_resumes(out, first_logs)
    _assert_same(out, reference)


def test_real_failing_job_is_reported_with_its_output(setup, tmp_path, capsys):
    out = tmp_path / "out"  # no oxford_pets under the data root: train.py fails (retries: the fake-job tests)
    argv = _sweep_argv(setup, out, "--retries", "0")
    argv[argv.index("eurosat"):argv.index("--seeds")] = ["oxford_pets"]
    argv[argv.index("--seeds") + 1:argv.index("--shots")] = ["1"]
    assert sweep_main(argv) == 1
    summary = _summary(out)
    train = summary[f"base2new/train_base/oxford_pets/shots_4/ProMetaR/{CFG}/seed1"]
    assert train["state"] == "failed" and train["attempts"] == 1 and train["error"].startswith("exit code")
    captured = Path(train["stdout"]).read_text()
    assert captured.count("==> ") == 1 and os.path.join(setup["data"], "oxford_pets") in captured
    printed = capsys.readouterr().out
    assert "Failed jobs (1):" in printed and f"output: {train['stdout']}" in printed
    assert summary[f"base2new/test_new/oxford_pets/shots_4/ProMetaR/{CFG}/seed1"]["state"] == "blocked"
