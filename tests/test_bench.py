"""Smoke tests of the benchmark scripts (bench/) on the tiny CLIP shape: they run, and their JSON has the schema."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

TEXT_KEYS = {"n_cls", "full_s", "truncated_s", "speedup"}
STEP_KEYS = {"n_cls", "ivlp_s", "reg_step_s", "prometar_s", "ivlp_peak_mb", "prometar_peak_mb", "ivlp_gflop",
             "prometar_gflop", "device", "prec"}
STEP_POSITIVE = ("ivlp_s", "reg_step_s", "prometar_s", "ivlp_peak_mb", "reg_peak_mb", "prometar_peak_mb",
                 "ivlp_gflop", "reg_step_gflop", "prometar_gflop", "ivlp_gflop_per_s", "prometar_gflop_per_s")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def text_encoder():
    return _load("text_encoder")


@pytest.fixture(scope="module")
def step_cost():
    return _load("step_cost")


def test_class_names_are_deterministic_distinct_and_fit_the_context():
    common = _load("_common")
    names = common.class_names(300, seed=0)
    assert names == common.class_names(300, seed=0) and names[:20] == common.class_names(20, seed=0)
    assert len({n.lower() for n in names}) == 300
    assert names != common.class_names(300, seed=1)
    tokens = common.clip.tokenize([f"a photo of a {n.replace('_', ' ')}." for n in names])  # raises if > 77
    assert 8 <= int(tokens.argmax(-1).max()) < 40


def test_text_encoder_smoke(text_encoder, tmp_path, capsys):
    out = tmp_path / "text.json"
    assert text_encoder.main(["--shape", "tiny", "--n-cls", "2", "--n-cls", "5", "--repeats", "1",
                              "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["n_cls"] for r in rows] == [2, 5]
    for row in rows:
        assert TEXT_KEYS <= set(row)
        assert row["full_s"] > 0 and row["truncated_s"] > 0 and row["speedup"] > 0
        assert 0 <= row["max_rel_err"] <= 1e-5 and row["tokens_truncated"] < row["tokens_full"] == 77
    assert "PASS" in capsys.readouterr().out


def test_step_cost_smoke_in_process(step_cost, tmp_path, capsys):
    out = tmp_path / "step.json"
    assert step_cost.main(["--shape", "tiny", "--n-cls", "2", "--n-cls", "5", "--iters", "1", "--in-process",
                           "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["n_cls"] for r in rows] == [2, 5]
    for row in rows:
        assert STEP_KEYS <= set(row)
        for key in STEP_POSITIVE:
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert row["device"] == "cpu" and row["prec"] == "fp32" and row["learner"] == "IVLP"
        assert len(set(row["labels"])) >= 2 and row["target_checks"] is None
        # the full iteration contains the regularised step, which contains a plain forward/backward
        assert row["prometar_gflop"] > row["reg_step_gflop"] > row["ivlp_gflop"]
    assert rows[1]["labels"] == sorted(set(rows[1]["labels"])) and len(rows[1]["labels"]) == 4  # 4 distinct
    assert "not applicable" in capsys.readouterr().out


def test_step_cost_child_process_measures_the_meta_step(step_cost):
    spec = dict(n_cls=3, device="cpu", prec="fp32", amp_dtype="bf16", learner="IVLP", shape="tiny", iters=1,
                warmup=1, templates=1, threads=1, seed=0, flops=True, isolated=True, variant="prometar")
    result = step_cost._run_child(spec, timeout=300)
    assert result["variant"] == "prometar" and result["s"] > 0 and result["gflop"] > 0
    assert result["peak_mb"] >= result["base_mb"] > 0


@pytest.mark.parametrize("learner", ["CoOp", "VPT", "MaPLe"])
def test_step_cost_other_learners(step_cost, learner):
    base = dict(n_cls=2, device="cpu", prec="fp32", amp_dtype="bf16", learner=learner, shape="tiny", iters=1,
                warmup=1, templates=1, threads=None, seed=0, flops=False, isolated=False)
    result = step_cost.measure_variant(dict(base, variant="prometar"))
    assert result["s"] > 0 and math.isnan(result["gflop"])


def test_target_checks(step_cost):
    row = dict(n_cls=100, device="cpu", prec="fp32", isolated=True, ivlp_s=1.0, reg_step_s=1.5, prometar_s=4.0,
               ivlp_peak_mb=1000.0, prometar_peak_mb=2600.0, ivlp_step_mb=100.0, prometar_step_mb=400.0,
               step_mem_ratio=4.0, peak_ratio=2.6, reg_over_ivlp_s=1.5, ivlp_gflop_per_s=100.0,
               prometar_gflop_per_s=70.0, gflop_rate_ratio=0.7)
    assert step_cost.is_target_row(row)
    lines = step_cost.check_lines([row])
    assert [line.split(":")[0] for line in lines] == ["FAIL", "PASS", "PASS"]
    lines = step_cost.check_lines([dict(row, prometar_gflop_per_s=float("nan"))])
    assert lines[2].startswith("SKIP")
    assert not step_cost.is_target_row(dict(row, n_cls=10))
    assert "not applicable" in step_cost.check_lines([dict(row, prec="fp16")])[0]


def test_step_cost_text_chunk_rows_and_variants(step_cost, tmp_path):
    out = tmp_path / "chunk.json"
    assert step_cost.main(["--shape", "tiny", "--n-cls", "9", "--text-chunk", "0", "--text-chunk", "4",
                           "--variants", "prometar", "--iters", "1", "--no-flops", "--in-process",
                           "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["n_cls"], r["text_chunk"], r["text_chunk_setting"]) for r in rows] == [(9, 0, 0), (9, 4, 4)]
    for row in rows:
        assert row["variants"] == ["prometar"] and row["ivlp_s"] is None and row["ivlp_peak_mb"] is None
        assert row["text_chunks_by_variant"] == {"prometar": [row["text_chunk"], row["text_chunk_first_order"]]}
        assert row["prometar_s"] > 0 and row["prometar_peak_mb"] > 0


def test_chunk_target_checks_compare_rows_of_the_same_run(step_cost):
    def row(n_cls, chunk, **kw):
        return dict(n_cls=n_cls, text_chunk=chunk, device="cpu", prec="fp32", shape="ViT-B/16", **kw)
    rows = [row(300, 0, prometar_s=100.0, prometar_peak_mb=14000.0),
            row(300, 96, prometar_s=120.0, prometar_peak_mb=7500.0),
            row(1000, 96, prometar_s=400.0, prometar_peak_mb=7000.0),
            row(10, 0, prometar_s=12.0, ivlp_s=2.5)]
    results = {name: ok for name, _, ok, _ in step_cost.chunk_checks(rows)}
    assert results == {"chunk_peak_300": False, "chunk_time_300": True, "peak_1000": True, "ivlp_ratio_10": False}
    assert step_cost.chunk_checks([dict(rows[1], shape="tiny")]) == []  # stated for ViT-B/16 only
    assert step_cost.chunk_checks(rows[1:2]) == []  # no unchunked row of the same run: nothing to compare


def test_step_cost_rejects_a_single_class(step_cost):
    with pytest.raises(SystemExit):
        step_cost.main(["--shape", "tiny", "--n-cls", "1"])


def test_world_bench_properties_follow_the_thresholds():
    world_bench = _load("world")

    def res(zs, probe, coop, ivlp, prometar=None):
        out = {"zero_shot": dict(zip(("base", "new", "hm"), zs)), "linear_probe": dict(zip(("base", "new"), probe)),
               "coop": dict(zip(("base", "new", "hm"), coop)), "ivlp": dict(zip(("base", "new", "hm"), ivlp))}
        if prometar:
            out["prometar"] = dict(zip(("base", "new", "hm"), prometar))
        return out

    good = world_bench.properties(res((50, 50, 50), (60, 61), (55, 49, 51.9), (58, 52, 54.8)))
    assert good["headroom_base"] == 10 and good["headroom_new"] == 11 and good["ivlp_gain_base"] == 8
    assert good["coop_forgetting_new"] == 1 and good["all_hold"]
    for bad in (res((50, 50, 50), (59.9, 70), (55, 49, 51.9), (58, 52, 54.8)),   # too little headroom on base
                res((50, 50, 50), (70, 70), (55, 50, 52.4), (58, 52, 54.8)),     # CoOp does not forget
                res((50, 50, 50), (70, 70), (55, 40, 46.1), (57.9, 52, 54.8))):  # IVLP gains < 8
        assert not world_bench.properties(bad)["all_hold"]
    with_prometar = world_bench.properties(res((50, 50, 50), (70, 70), (55, 40, 46.1), (60, 45, 51.4),
                                               (60, 55, 57.4)))
    assert with_prometar["prometar_hm_above_ivlp_coop_zero_shot"] is True and with_prometar["all_hold"]
    worse = world_bench.properties(res((50, 50, 50), (70, 70), (55, 40, 46.1), (60, 45, 51.4), (60, 40, 48.0)))
    assert worse["prometar_hm_above_ivlp_coop_zero_shot"] is False and worse["all_hold"]  # reported, not required
    assert good["prometar_hm_above_ivlp_coop_zero_shot"] is None
