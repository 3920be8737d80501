"""ProMetaR algorithm: modulator formula, meta-gradients vs finite differences, first order, replay, skips."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prometar.clip_loader import build_clip
from prometar.learners import LEARNERS, build_learner
from prometar.meta import (Batch, GradientModulator, MetaSampler, MetaSettings, MetaTask, ProMetaRStep,
                           batch_losses, meta_objective, split_gradients)
from prometar.model import PromptedCLIP

NAMES = ["cat", "dog", "red car", "tree"]


def make(learner="IVLP", dtype=torch.float32, dim_rate=8, seed=0, **kw):
    torch.manual_seed(seed)
    clip_model = build_clip("tiny", seed=seed).float()
    kw = {**dict(n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2, ctx_init="a photo"), **kw}
    lrn = build_learner(learner, clip_model, **{k: v for k, v in kw.items() if k in LEARNERS[learner].options})
    model = PromptedCLIP(clip_model, lrn, NAMES, precision="fp32").to(dtype)
    specs = lrn.tensor_specs()
    named = dict(lrn.named_parameters())
    mod = GradientModulator(specs, [named[s.name].shape for s in specs], dim_rate=dim_rate).to(dtype)
    return model, mod


def tensors(model):
    specs = model.prompt_learner.tensor_specs()
    named = dict(model.prompt_learner.named_parameters())
    return [s.name for s in specs], [s.side for s in specs], [named[s.name] for s in specs]


def test_modulated_gradient_matches_the_formula():
    model, mod = make(dim_rate=4)
    names, sides, params = tensors(model)
    grads = [torch.randn_like(p) for p in params]
    regs = [torch.randn_like(p) for p in params]
    out, gates = mod(grads, regs)
    for i, (g, r) in enumerate(zip(grads, regs)):
        w1, w2 = mod.nets[i][0].weight.detach().numpy(), mod.nets[i][1].weight.detach().numpy()
        x = np.concatenate([g.numpy().ravel(), r.numpy().ravel()])
        gate = 1 / (1 + np.exp(-(w2 @ (w1 @ x))))
        gate = np.repeat(gate, 4).reshape(g.shape)  # each value 4 times consecutively
        np.testing.assert_allclose(out[i].detach().numpy(), g.numpy() + gate * r.numpy(), rtol=1e-5, atol=1e-6)
    assert mod.nets[0][0].weight.shape == (params[0].numel() // 4, 2 * params[0].numel())
    assert mod.nets[0][0].bias is None and mod.nets[0][1].bias is None


def test_dim_rate_must_divide_the_block():
    with pytest.raises(ValueError, match="DIM_RATE=7"):
        make(dim_rate=7)


def test_regulariser_gradients_come_from_each_tensors_own_side():
    model, _ = make()
    names, sides, params = tensors(model)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 2])
    teacher = model.teacher_image_features(images)
    ce, rt, ri = batch_losses(model, None, Batch(images, labels, teacher), MetaSettings(text_weight=50.0,
                                                                                         image_weight=20.0))
    grads, reg = split_gradients(ce, rt, ri, params, sides, create_graph=False)
    for p, side, g_r in zip(params, sides, reg):
        term = rt if side == "text" else ri
        (expected,) = torch.autograd.grad(term, p, retain_graph=True)
        assert torch.allclose(g_r, expected)
    assert sides == ["text", "text", "vision", "vision"]


def _meta_setup(first_order, learner="IVLP", **kw):
    model, mod = make(learner=learner, dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in list(model.prompt_learner.parameters()) + list(mod.parameters()):
            p.mul_(3.0)  # larger gates/prompts than at init: a less trivial point to differentiate at
    images = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 2, 3])
    teacher = model.teacher_image_features(images)
    query = labels == 1
    lam = torch.tensor([0.3, 0.8], dtype=torch.float64)
    partners = torch.tensor([2, 0])
    names, sides, params = tensors(model)

    settings = MetaSettings(adapt_lr=0.5, first_order=first_order, text_weight=50.0, image_weight=20.0)

    def loss():
        return meta_objective(model, mod, dict(zip(names, params)), batch=Batch(images, labels, teacher),
                              task=MetaTask(query, lam, partners), settings=settings)
    return model, mod, params, loss


@pytest.mark.parametrize("learner", ["IVLP", "MaPLe"])
def test_second_order_meta_gradient_matches_finite_differences(learner):
    kw = dict(n_ctx_text=2, depth_text=2) if learner == "MaPLe" else {}
    model, mod, params, loss = _meta_setup(first_order=False, learner=learner, **kw)
    leaves = params + list(mod.parameters())
    grads = torch.autograd.grad(loss(), leaves)
    gen = torch.Generator().manual_seed(1)
    for trial in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in leaves]
        analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
        eps = 1e-6  # small: the L1 terms make the inner step piecewise smooth
        with torch.no_grad():
            for p, d in zip(leaves, direction):
                p.add_(eps * d)
            plus = loss().item()
            for p, d in zip(leaves, direction):
                p.sub_(2 * eps * d)
            minus = loss().item()
            for p, d in zip(leaves, direction):
                p.add_(eps * d)
        numeric = (plus - minus) / (2 * eps)
        assert abs(analytic - numeric) <= 1e-4 * max(abs(numeric), 1e-8), (trial, analytic, numeric)
    # theta alone and phi alone, so neither part can hide behind the other
    for part in (slice(0, len(params)), slice(len(params), None)):
        d = [torch.randn_like(p) for p in leaves[part]]
        analytic = sum((g * v).sum() for g, v in zip(grads[part], d)).item()
        with torch.no_grad():
            for p, v in zip(leaves[part], d):
                p.add_(1e-6 * v)
            plus = loss().item()
            for p, v in zip(leaves[part], d):
                p.sub_(2e-6 * v)
            minus = loss().item()
            for p, v in zip(leaves[part], d):
                p.add_(1e-6 * v)
        numeric = (plus - minus) / 2e-6
        assert abs(analytic - numeric) <= 1e-4 * abs(numeric)


def test_first_order_equals_the_stop_gradient_version():
    model, mod, params, loss_fo = _meta_setup(first_order=True)
    _, mod_so, params_so, loss_so = _meta_setup(first_order=False)  # same seed: identical copies
    fo = torch.autograd.grad(loss_fo(), params + list(mod.parameters()))
    so = torch.autograd.grad(loss_so(), params_so + list(mod_so.parameters()))
    # phi: the gate sees the same gradient values in both variants, so its meta-gradient is identical
    for a, b in zip(fo[len(params):], so[len(params):]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    # theta: with the inner gradient detached, d theta'/d theta = I, so the meta-gradient is dL/d theta'
    names, sides, _ = tensors(model)
    labels = torch.tensor([0, 1, 1, 2, 3])
    torch.manual_seed(0)
    images = torch.randn(5, 3, 32, 32, dtype=torch.float64)
    model2, mod2, params2, _ = _meta_setup(first_order=True)
    teacher = model2.teacher_image_features(images)
    query = labels == 1
    lam, partners = torch.tensor([0.3, 0.8], dtype=torch.float64), torch.tensor([2, 0])
    settings = MetaSettings(adapt_lr=0.5, first_order=True, text_weight=50.0, image_weight=20.0)
    ce, rt, ri = batch_losses(model2, None, Batch(images[~query], labels[~query], teacher[~query]), settings)
    g, r = split_gradients(ce, rt, ri, params2, sides, create_graph=False)
    with torch.no_grad():
        mg, _ = mod2(g, r)
    adapted = [(p - 0.5 * m).detach().requires_grad_() for p, m in zip(params2, mg)]
    prompts = model2.prompts(dict(zip(names, adapted)))
    image = model2.image_features(images, prompts)
    mixed = lam[:, None] * image[query] + (1 - lam[:, None]) * image[~query][partners]
    logits = model2.logits(mixed, model2.text_features(prompts))
    loss = (lam * F.cross_entropy(logits, labels[query], reduction="none")
            + (1 - lam) * F.cross_entropy(logits, labels[~query][partners], reduction="none")).mean()
    expected = torch.autograd.grad(loss, adapted)
    fo2 = torch.autograd.grad(meta_objective(model2, mod2, dict(zip(names, params2)),
                                             batch=Batch(images, labels, teacher), task=MetaTask(query, lam, partners),
                                             settings=settings), params2)
    for a, b in zip(fo2, expected):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert not all(torch.allclose(a, b) for a, b in zip(fo[:len(params)], so[:len(params)]))


def _step(model, mod, seed=0, lr=0.05, **kw):
    opt = torch.optim.SGD(model.prompt_learner.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    opt_m = torch.optim.SGD(mod.parameters(), lr=0.01)
    return ProMetaRStep(model, mod, opt, opt_m, MetaSampler(seed), adapt_lr=0.05, lr_ratio=1.0, **kw)


def test_replayed_step_is_bit_identical():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 2])
    results = []
    for _ in range(2):
        model, mod = make(seed=5)
        step = _step(model, mod, seed=11)
        for _ in range(2):
            step(images, labels)
        results.append([p.detach().clone() for p in list(model.prompt_learner.parameters()) + list(mod.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_replaced_sampler_controls_the_meta_step():
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 2])
    outs = []
    for query_class in (1, 2):
        class Forced(MetaSampler):
            def query_class(self, labels):
                return query_class
        model, mod = make(seed=5)
        step = _step(model, mod)
        step.sampler = Forced(0)
        outs.append(step(images, labels).meta_loss)
    assert outs[0] != outs[1]


def test_one_class_batch_skips_meta_step_but_takes_regularised_step():
    model, mod = make()
    step = _step(model, mod)
    before = [p.detach().clone() for p in model.prompt_learner.parameters()]
    mod_before = [p.detach().clone() for p in mod.parameters()]
    state = copy.deepcopy(step.sampler.state_dict())
    metrics = step(torch.randn(3, 3, 32, 32), torch.tensor([2, 2, 2]))
    assert not metrics.meta_ran and metrics.meta_loss == 0.0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.prompt_learner.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(mod_before, mod.parameters()))
    assert step.sampler.state_dict()["bit_generator"] == state["bit_generator"]  # no random draw consumed


@pytest.mark.parametrize("learner", ["IVLP", "CoOp", "VPT", "MaPLe"])
def test_training_keeps_clip_frozen_and_lowers_the_loss(learner):
    kw = {"n_ctx_vision": 2, "depth_vision": 2} if learner == "VPT" else {}
    model, mod = make(learner=learner, **kw)
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items()}
    torch.manual_seed(0)
    images, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])

    def ce():
        with torch.no_grad():
            return F.cross_entropy(model.eval()(images), labels).item()

    start = ce()
    step = _step(model.train(), mod, lr=1.0, text_weight=0.1, image_weight=0.1)
    for _ in range(15):
        assert step(images, labels).meta_ran
    assert ce() < 0.97 * start
    assert all(torch.equal(frozen[k], v) for k, v in model.clip.state_dict().items())
