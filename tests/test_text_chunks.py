"""Chunked text side: equal math to the one-graph computation (features, gradients, first- and second-order
meta-gradients, full steps, evaluation, teacher), memory bounded by a chunk, and the chunk-size choice."""
import weakref

import pytest
import torch
import torch.nn.functional as F

import prometar.text_chunks as tc
from prometar.clip_loader import build_clip
from prometar.learners import LEARNERS, build_learner
from prometar.meta import (Batch, GradientModulator, MetaSampler, MetaSettings, MetaTask, ProMetaRStep, batch_losses,
                           meta_objective, split_gradients)
from prometar.model import PromptedCLIP

NAMES = ["cat", "dog", "red car", "tree", "golden retriever", "yin yang", "a very long name of a rare object"]
TEMPLATES = ("a photo of a {}.", "a drawing of the {}.", "itap of my {}.")


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def max_rel(xs, ys):
    return max(rel(x, y) for x, y in zip(xs, ys))


def make(chunk, learner="IVLP", dtype=torch.float64, names=NAMES, seed=0):
    """A small CLIP with a learner and a modulator; prompts and modulator scaled away from their init."""
    torch.manual_seed(seed)
    clip_model = build_clip("tiny", seed=seed).float()
    kw = dict(n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2, ctx_init="a photo")
    lrn = build_learner(learner, clip_model, **{k: v for k, v in kw.items() if k in LEARNERS[learner].options})
    model = PromptedCLIP(clip_model, lrn, names, precision="fp32", teacher_templates=TEMPLATES).to(dtype)
    model.text_chunks = tc.TextChunks(chunk, chunk, f"chunks of {chunk}")  # the same size for every pass
    specs = lrn.tensor_specs()
    named = dict(lrn.named_parameters())
    mod = GradientModulator(specs, [named[s.name].shape for s in specs], dim_rate=4).to(dtype)
    with torch.no_grad():
        for p in list(lrn.parameters()) + list(mod.parameters()):
            p.mul_(3.0)
    return model, mod


def tensors(model):
    specs = model.prompt_learner.tensor_specs()
    named = dict(model.prompt_learner.named_parameters())
    return [s.name for s in specs], [s.side for s in specs], [named[s.name] for s in specs]


def inputs(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    images = torch.randn(6, 3, 32, 32, generator=g, dtype=dtype)
    labels = torch.tensor([0, 6, 6, 2, 3, 5])
    return images, labels


class CountCalls:
    """Counts calls of a function of prometar.text_chunks (to prove the chunked path ran)."""

    def __init__(self, monkeypatch, name):
        self.n = 0
        original = getattr(tc, name)

        def counted(*args, **kw):
            self.n += 1
            return original(*args, **kw)
        monkeypatch.setattr(tc, name, counted)


# ---------------------------------------------------------------------------------------------- generic function
def test_chunked_rows_equal_one_graph_up_to_second_derivatives():
    """A nonlinear row function: values, J^T v and d<J^T v, u>/d(P, v) equal the one-graph autograd ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 5, generator=g, dtype=torch.float64)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(rows, params, double_diff):
        w, c = params
        return torch.tanh(x[rows] @ w + c) ** 2 * x[rows, :1]

    v = torch.randn(11, 4, generator=g, dtype=torch.float64, requires_grad=True)
    u = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    results = []
    for chunks in ([torch.arange(11)], tc.plan_chunks(torch.randint(0, 9, (11,), generator=g), 3)):
        out = tc.chunked_rows(fn, chunks, 11, [a, b]) if len(chunks) > 1 else fn(torch.arange(11), [a, b], True)
        vjp = torch.autograd.grad(out, [a, b], v, create_graph=True)
        second = torch.autograd.grad(sum((p * q).sum() for p, q in zip(vjp, u)), [a, b, v])
        results.append([out, *vjp, *second])
    assert [len(c) for c in tc.plan_chunks(torch.zeros(11), 3)] == [3, 3, 3, 2]
    assert [len(c) for c in tc.plan_chunks(torch.zeros(11), 6)] == [6, 5]
    assert tc.plan_chunks(torch.tensor([5, 1, 3, 2]), 2)[0].tolist() == [1, 3]  # the shortest rows first
    assert max_rel(results[1], results[0]) <= 1e-12


def test_third_derivative_is_refused():
    a = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out = tc.chunked_rows(lambda rows, p, dd: (p[0] ** 3).expand(len(rows), 3), tc.plan_chunks(torch.zeros(4), 2), 4,
                          [a])
    (g,) = torch.autograd.grad(out.sum(), a, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), a, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(h.sum(), a)


# ---------------------------------------------------------------------------------------------- the model, float64
def test_features_teacher_and_evaluation_equal_unchunked():
    (ref, _), (chk, _) = make(0), make(2)
    assert len(chk._chunks(chk.eot)) == 4 and chk._chunks(ref.eot) is not None and ref._chunks(ref.eot) is None
    images, _ = inputs()
    t_ref, t_chk = ref.text_features(ref.prompts()), chk.text_features(chk.prompts())
    assert type(t_chk.grad_fn).__name__ == "_ChunkedForwardBackward"
    assert rel(t_chk, t_ref) <= 1e-10 and rel(chk.teacher_text, ref.teacher_text) <= 1e-10
    with torch.no_grad():
        assert rel(chk.eval()(images), ref.eval()(images)) <= 1e-10


@pytest.mark.parametrize("learner", ["IVLP", "MaPLe"])
def test_regularised_step_gradients_equal_unchunked(learner, monkeypatch):
    count = CountCalls(monkeypatch, "_vjp_rows")
    images, labels = inputs()
    out = []
    for chunk in (0, 3):
        model, _ = make(chunk, learner)
        _, sides, params = tensors(model)
        teacher = model.teacher_image_features(images)
        losses = batch_losses(model, None, Batch(images, labels, teacher), MetaSettings())
        grads, reg = split_gradients(*losses, params, sides, create_graph=False)
        out.append([*losses, *grads, *[r for r in reg if r is not None]])
    assert count.n == 2  # the chunked backward ran for CE and for the text regulariser
    assert max_rel(out[1], out[0]) <= 1e-10


def _meta(model, mod, first_order):
    images, labels = inputs()
    names, _, params = tensors(model)
    teacher = model.teacher_image_features(images)
    task = MetaTask(labels == 6, torch.tensor([0.3, 0.8], dtype=torch.float64), torch.tensor([2, 0]))
    loss = meta_objective(model, mod, dict(zip(names, params)), batch=Batch(images, labels, teacher), task=task,
                          settings=MetaSettings(adapt_lr=0.5, first_order=first_order))
    return [loss, *torch.autograd.grad(loss, params + list(mod.parameters()))]


@pytest.mark.parametrize("learner", ["IVLP", "CoOp", "MaPLe"])
def test_meta_gradients_equal_unchunked(learner, monkeypatch):
    """Second order (the Hessian-vector terms go through the chunked double backward) and first order."""
    count = CountCalls(monkeypatch, "_vjp_backward_rows")
    for first_order in (False, True):
        ref, chk = _meta(*make(0, learner), first_order), _meta(*make(2, learner), first_order)
        assert max_rel(chk, ref) <= 1e-10, first_order
    assert count.n == 2  # second order: the chunked VJP was differentiated for CE and for the text regulariser


def test_training_steps_equal_unchunked():
    images, labels = inputs()
    states = []
    for chunk in (0, 3):
        model, mod = make(chunk)
        opt = torch.optim.SGD(model.prompt_learner.parameters(), lr=0.05, momentum=0.9)
        opt_m = torch.optim.SGD(mod.parameters(), lr=0.05)
        step = ProMetaRStep(model, mod, opt, opt_m, MetaSampler(4), adapt_lr=0.05, lr_ratio=1.0)
        metrics = [step(images, labels).as_dict() for _ in range(2)]
        assert all(m["meta"] == 1.0 for m in metrics)
        states.append([*model.prompt_learner.parameters(), *mod.parameters()])
        states.append(torch.tensor([m[k] for m in metrics for k in ("ce", "reg_text", "meta_loss")]))
    assert max_rel(states[2], states[0]) <= 1e-10 and rel(states[3], states[1]) <= 1e-10


def test_float32_meta_gradient_within_1e_5():
    """At the official inner learning rate (5e-4): float32 rounding differs, the values agree to 1e-5."""
    ref, chk = make(0, dtype=torch.float32), make(3, dtype=torch.float32)
    images, labels = inputs(torch.float32)
    outs = []
    for model, mod in (ref, chk):
        names, _, params = tensors(model)
        task = MetaTask(labels == 6, torch.tensor([0.3, 0.8]), torch.tensor([2, 0]))
        loss = meta_objective(model, mod, dict(zip(names, params)),
                              batch=Batch(images, labels, model.teacher_image_features(images)), task=task,
                              settings=MetaSettings(adapt_lr=5e-4))
        outs.append([loss, *torch.autograd.grad(loss, params + list(mod.parameters()))])
    assert max_rel(outs[1], outs[0]) <= 1e-5


# ---------------------------------------------------------------------------------------------- memory
def _peak_saved_bytes(fn, exclude):
    """Largest total size of the distinct storages autograd holds for the backward pass at any time while `fn()`
    runs (the storages of `exclude`, the frozen weights, not counted)."""
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    refs, live, peak = {}, [0], [0]

    def release(ptr, size):
        refs[ptr] -= 1
        if not refs[ptr]:
            del refs[ptr]
            live[0] -= size

    def pack(t):
        holder = _Holder(t)
        storage = t.untyped_storage()
        ptr, size = storage.data_ptr(), storage.nbytes()
        if ptr and ptr not in skip:
            if ptr not in refs:
                refs[ptr] = 0
                live[0] += size
                peak[0] = max(peak[0], live[0])
            refs[ptr] += 1
            weakref.finalize(holder, release, ptr, size)
        return holder

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda holder: holder.tensor):
        fn()
    return peak[0]


class _Holder:
    def __init__(self, tensor):
        self.tensor = tensor


def test_saved_activations_do_not_grow_with_the_classes():
    """The second-order meta step holds one chunk's activations: the same for 8 and 16 classes, while the
    unchunked step's grow with the classes."""
    peaks = {}
    for chunk in (0, 2):
        for n in (8, 16):
            model, mod = make(chunk, names=[f"class number {i}" for i in range(n)])
            peaks[chunk, n] = _peak_saved_bytes(lambda: _meta(model, mod, first_order=False),
                                                list(model.clip.parameters()))
    assert peaks[0, 16] > 1.3 * peaks[0, 8]
    assert peaks[2, 16] <= 1.02 * peaks[2, 8] and peaks[2, 16] < 0.6 * peaks[0, 16]


# ---------------------------------------------------------------------------------------------- chunk size
def test_chunk_setting_resolution(monkeypatch):
    clip_model = build_clip("tiny", seed=0)
    lengths = torch.full((10 ** 6,), 12)
    first, second, whole = (tc.text_bytes_per_class(clip_model, 12, kind) for kind in ("first", "second", "iteration"))
    assert whole > first > 0 and second > first
    assert tc.resolve_text_chunk(0, lengths, clip_model, "cpu")[:2] == (0, 0)
    chunks = tc.resolve_text_chunk(64, lengths, clip_model, "cpu")
    assert chunks.second == 64 and chunks.first == int(64 * second // first) > 64
    assert chunks.size(True, 1000) == 64 and chunks.size(True, 64) == 0 and chunks.size(False, chunks.first) == 0
    chunks = tc.resolve_text_chunk(-1, lengths, clip_model, "cpu", budget_mb=100.5 * second / 2 ** 20)
    assert chunks.second == 100 and chunks.first == int(100.5 * second // first) and "TEXT_CHUNK_MB" in chunks.note
    assert "second-order passes chunks of 100" in chunks.note
    chunks = tc.resolve_text_chunk(-1, lengths[:10], clip_model, "cpu", budget_mb=20 * whole / 2 ** 20)
    assert chunks[:2] == (0, 0) and "at once" in chunks.note
    assert tc.free_memory_bytes("cpu") > 0
    # no budget: one graph while it takes <= 1/2 of the free memory, else chunks fitting 1/8 of it
    monkeypatch.setattr(tc, "free_memory_bytes", lambda device: 2 ** 33)
    fits = int(2 ** 32 // whole)
    assert tc.resolve_text_chunk(-1, lengths[:fits], clip_model, "cpu")[:2] == (0, 0)
    chunks = tc.resolve_text_chunk(-1, torch.full((fits + 1,), 12), clip_model, "cpu")
    assert chunks[:2] == (int(2 ** 30 // first), int(2 ** 30 // second)) and "8.0 GB free on cpu" in chunks.note
    with pytest.raises(ValueError, match="TEXT_CHUNK must be"):
        tc.resolve_text_chunk(-2, lengths, clip_model, "cpu")
    with pytest.raises(ValueError, match="TEXT_CHUNK_MB"):
        tc.resolve_text_chunk(-1, lengths, clip_model, "cpu", budget_mb=-1)


def test_build_reads_the_config_keys_and_logs_the_choice_once(small_clip_path, capsys):
    from prometar.build import build_prompted_clip
    from prometar.config import extend_cfg, get_cfg_default

    cfg = extend_cfg(get_cfg_default())
    cfg.MODEL.BACKBONE.NAME, cfg.INPUT.SIZE, cfg.TRAINER.PROMETAR.PREC = str(small_clip_path), (32, 32), "fp32"
    cfg.TRAINER.PROMETAR.PROMPT_DEPTH_TEXT = cfg.TRAINER.PROMETAR.PROMPT_DEPTH_VISION = 2
    assert cfg.TRAINER.PROMETAR.TEXT_CHUNK == -1 and cfg.TRAINER.PROMETAR.TEXT_CHUNK_MB == 0.0
    capsys.readouterr()
    for chunk, budget_mb, second in ((3, 0.0, 3), (-1, 0.001, 1), (-1, 0.0, 0)):
        cfg.TRAINER.PROMETAR.TEXT_CHUNK, cfg.TRAINER.PROMETAR.TEXT_CHUNK_MB = chunk, budget_mb
        model = build_prompted_clip(cfg, NAMES, torch.device("cpu"))
        assert model.text_chunks.second == second
        out = capsys.readouterr().out
        assert out.count("Text side: ") == 1 and model.text_chunks.note in out
