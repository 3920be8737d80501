"""The name-agnostic MetaRegularizer: the project's IVLP path through it, a non-prompt model, a host's own model.

(1) IVLP written against the generic API by hand (its own forward, its own parameter groups) equals the existing
    `ProMetaRStep` path and a hand-written regularised step (float64): losses, gradients, parameters, modulator.
(2) A CLIP-Adapter-style residual MLP on frozen features: meta-gradients match finite differences (float64).
(3) A module shaped like a CoOp-family `CustomCLIP` (its own prompt learner, nn.MultiheadAttention encoders, its
    own forward), wrapped with `module_forward` without changing its code.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from prometar.clip_loader import build_clip
from prometar.learners import build_learner
from prometar.meta import (ForwardContext, GradientModulator, MetaOutput, MetaRegularizer, MetaSampler, MetaTask,
                           ProMetaRStep, module_forward)
from prometar.model import PromptedCLIP

D = torch.float64
NAMES = ["cat", "dog", "red car", "tree"]


def ivlp(seed=0):
    torch.manual_seed(seed)
    clip_model = build_clip("tiny", seed=0).float()
    learner = build_learner("IVLP", clip_model, n_ctx_text=2, n_ctx_vision=2, depth_text=2, depth_vision=2,
                            ctx_init="a photo")
    model = PromptedCLIP(clip_model, learner, NAMES, precision="fp32").to(D)
    with torch.no_grad():
        for p in learner.parameters():
            p.mul_(3.0)  # away from the init: larger gates and regulariser gradients
    modulator = GradientModulator.for_learner(learner, dim_rate=4).to(D)
    with torch.no_grad():
        for p in modulator.parameters():
            p.mul_(3.0)
    return model, modulator


def user_regularizer(model, sampler, **kw):
    """IVLP as a researcher would write it against the generic API: no tensor specs, no parameter-name parsing."""
    learner = model.prompt_learner

    def forward(params, inputs, ctx):
        images, teacher_image = inputs
        prompts = model.prompts(params)
        text = model.text_features(prompts, ctx.second_order)
        image = model.image_features(images, prompts, ctx.second_order)
        return MetaOutput(model.logits(ctx.mix(image), text), {"text": text, "image": image},
                          {"text": model.teacher_text, "image": teacher_image})

    groups = {"text": dict(learner.text.named_parameters(prefix="text")),
              "image": dict(learner.vision.named_parameters(prefix="vision"))}
    blocks = {name: p.numel() for group in groups.values() for name, p in group.items()}  # whole-tensor gates
    return MetaRegularizer(forward, groups, weights={"text": 50.0, "image": 20.0}, blocks=blocks, dim_rate=4,
                           sampler=sampler, **kw)


def sgd(params, lr=0.3):
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)


def data(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=D), torch.tensor([0, 1, 1, 2, 3, 3])[:n]


def test_ivlp_regularised_step_equals_existing_path_and_a_hand_written_step():
    images, labels = data()
    model_a, mod_a = ivlp()
    model_b, mod_b = ivlp()
    model_c, mod_c = ivlp()
    step = ProMetaRStep(model_a, mod_a, sgd(model_a.prompt_learner.parameters()), sgd(mod_a.parameters()),
                        adapt_lr=0.1, lr_ratio=1.0)
    reg = user_regularizer(model_b, MetaSampler(0))
    reg.modulator.load_state_dict(mod_b.state_dict())  # same state-dict keys as the project's modulator
    teacher = model_a.teacher_image_features(images)
    metrics_a = step._regularised_step(images, labels, teacher)
    metrics_b = reg.regularised_step((images, teacher), labels, sgd(model_b.prompt_learner.parameters()))

    # hand-written: plain autograd calls, the gate formula in NumPy, SGD with momentum and weight decay by hand
    learner = model_c.prompt_learner
    prompts = learner()
    text, image = model_c.text_features(prompts), model_c.image_features(images, prompts)
    ce = F.cross_entropy(model_c.logits(image, text), labels)
    reg_text = (F.normalize(text, dim=-1) - model_c.teacher_text).abs().mean() * 50
    reg_image = (F.normalize(image, dim=-1) - teacher).abs().mean() * 20
    assert metrics_a.ce == metrics_b.ce == pytest.approx(ce.item(), rel=1e-12)
    assert metrics_a.terms == metrics_b.terms
    assert metrics_b.terms["text"] == pytest.approx(reg_text.item(), rel=1e-12)
    assert metrics_b.terms["image"] == pytest.approx(reg_image.item(), rel=1e-12)
    params = [learner.text[0], learner.text[1], learner.vision[0], learner.vision[1]]
    for i, (p, term) in enumerate(zip(params, [reg_text, reg_text, reg_image, reg_image])):
        g = torch.autograd.grad(ce, p, retain_graph=True)[0].numpy().ravel()
        g_r = torch.autograd.grad(term, p, retain_graph=True)[0].numpy().ravel()
        w1, w2 = (mod_c.nets[i][k].weight.detach().numpy() for k in (0, 1))
        gate = np.repeat(1 / (1 + np.exp(-(w2 @ (w1 @ np.concatenate([g, g_r]))))), 4)
        update = g + gate * g_r + 5e-4 * p.detach().numpy().ravel()  # first SGD step: momentum buffer = update
        expected = p.detach().numpy().ravel() - 0.3 * update
        for model in (model_a, model_b):
            got = dict(model.prompt_learner.named_parameters())[["text.0", "text.1", "vision.0", "vision.1"][i]]
            np.testing.assert_allclose(got.detach().numpy().ravel(), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("first_order", [False, True])
def test_ivlp_iterations_equal_existing_path(first_order):
    """Two full iterations (regularised + meta step, shared momentum) through ProMetaRStep and through the user's
    generic regulariser: identical losses, meta-gradients, parameters and modulator after each."""
    images, labels = data()
    model_a, mod_a = ivlp()
    model_b, mod_b = ivlp()
    opt_a, opt_ma = sgd(model_a.prompt_learner.parameters()), sgd(mod_a.parameters(), 0.05)
    step = ProMetaRStep(model_a, mod_a, opt_a, opt_ma, MetaSampler(7), adapt_lr=0.1, lr_ratio=1.0,
                        first_order=first_order)
    reg = user_regularizer(model_b, MetaSampler(7), adapt_lr=0.1, lr_ratio=1.0, first_order=first_order)
    reg.modulator.load_state_dict(mod_b.state_dict())
    opt_b, opt_mb = sgd(model_b.prompt_learner.parameters()), sgd(reg.modulator.parameters(), 0.05)

    # the meta objective and its gradients in theta and phi, at the same point, same task
    teacher = model_a.teacher_image_features(images)
    task = MetaTask(labels == 1, torch.tensor([0.3, 0.8], dtype=D), torch.tensor([3, 0]))
    theta_a = dict(model_a.prompt_learner.named_parameters())
    loss_a = step.regularizer.meta_objective(theta_a, (images, teacher), labels, task)
    loss_b = reg.meta_objective(reg.named_params(), (images, teacher), labels, task)
    assert loss_a.item() == loss_b.item()
    grads_a = torch.autograd.grad(loss_a, list(theta_a.values()) + list(mod_a.parameters()))
    grads_b = torch.autograd.grad(loss_b, [reg.named_params()[n] for n in theta_a] + list(reg.modulator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))

    for x, y in ((images, labels), (images.flip(0), labels.flip(0))):
        m_a = step(x, y)
        m_b = reg.step((x, model_b.teacher_image_features(x)), y, opt_b, opt_mb)
        assert m_a.as_dict() == m_b.as_dict() and m_a.meta_ran
        for a, b in zip(list(model_a.prompt_learner.parameters()) + list(mod_a.parameters()),
                        list(model_b.prompt_learner.parameters()) + list(reg.modulator.parameters())):
            assert torch.equal(a, b)


# ---------------------------------------------------------------------- (2) a model that is not a prompt learner
class Adapter(nn.Module):
    """CLIP-Adapter: a bottleneck MLP blended into frozen features, classified by a frozen text classifier."""

    def __init__(self, dim=16, hidden=8, ratio=0.2):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        self.ratio = ratio


def adapter_setup(first_order, seed=0):
    torch.manual_seed(seed)
    adapter = Adapter().to(D)
    classifier = F.normalize(torch.randn(4, 16, dtype=D), dim=-1)
    feats = torch.randn(7, 16, dtype=D)  # frozen image features of a batch
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 0])

    def forward(params, x, ctx):
        z = (1 - adapter.ratio) * x + adapter.ratio * functional_call(adapter.mlp, params, (x,))
        logits = 10 * F.normalize(ctx.mix(z), dim=-1) @ classifier.t()
        return MetaOutput(logits, {"adapter": z}, {"adapter": F.normalize(x, dim=-1)})

    reg = MetaRegularizer(forward, {"adapter": dict(adapter.mlp.named_parameters())}, weights={"adapter": 5.0},
                          dim_rate=2, adapt_lr=0.5, first_order=first_order)
    with torch.no_grad():
        for p in reg.modulator.parameters():
            p.mul_(4.0)
    task = MetaTask(labels == 1, torch.tensor([0.3, 0.9], dtype=D), torch.tensor([4, 0]))
    return adapter, reg, feats, labels, task


def directional_fd(loss_fn, leaves, direction, eps=1e-6):
    with torch.no_grad():
        for p, d in zip(leaves, direction):
            p.add_(eps * d)
        plus = loss_fn().item()
        for p, d in zip(leaves, direction):
            p.sub_(2 * eps * d)
        minus = loss_fn().item()
        for p, d in zip(leaves, direction):
            p.add_(eps * d)
    return (plus - minus) / (2 * eps)


def test_adapter_meta_gradients_match_finite_differences():
    adapter, reg, feats, labels, task = adapter_setup(first_order=False)
    theta, phi = reg.params, list(reg.modulator.parameters())
    assert [s.block for s in reg.specs] == [16, 8, 8, 16]  # one row per block (the default), biases whole

    def loss():
        return reg.meta_objective(reg.named_params(), feats, labels, task)

    grads = torch.autograd.grad(loss(), theta + phi)
    gen = torch.Generator().manual_seed(3)
    for part in (slice(0, len(theta)), slice(len(theta), None), slice(None)):  # theta alone, phi alone, both
        leaves = (theta + phi)[part]
        direction = [torch.randn(p.shape, generator=gen, dtype=D) for p in leaves]
        analytic = sum((g * d).sum() for g, d in zip(grads[part], direction)).item()
        numeric = directional_fd(loss, leaves, direction)
        assert abs(analytic - numeric) <= 1e-6 * max(abs(numeric), 1e-3), (part, analytic, numeric)


def test_adapter_first_order_is_the_stop_gradient_meta_gradient():
    _, reg_fo, feats, labels, task = adapter_setup(first_order=True)
    _, reg_so, _, _, _ = adapter_setup(first_order=False)
    fo = torch.autograd.grad(reg_fo.meta_objective(reg_fo.named_params(), feats, labels, task), reg_fo.params)
    so = torch.autograd.grad(reg_so.meta_objective(reg_so.named_params(), feats, labels, task), reg_so.params)
    # first order: d theta'/d theta = I, so the gradient is dL_query/d theta' at theta' (computed here by hand)
    support = ~task.query
    ce, losses = reg_fo.losses(reg_fo.named_params(), feats[support], labels[support])
    g = torch.autograd.grad(ce, reg_fo.params, retain_graph=True)
    g_r = torch.autograd.grad(losses["adapter"], reg_fo.params)
    with torch.no_grad():
        modulated, _ = reg_fo.modulator(list(g), list(g_r))
    adapted = [(p - 0.5 * m).detach().requires_grad_() for p, m in zip(reg_fo.params, modulated)]
    query_loss = reg_fo.query_loss(dict(zip(reg_fo.names, adapted)), feats, labels, task)
    expected = torch.autograd.grad(query_loss, adapted)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(fo, expected))
    assert not all(torch.allclose(a, b) for a, b in zip(fo, so))


def test_adapter_trains_and_an_unregularised_group_gets_the_plain_gradient():
    torch.manual_seed(0)
    feats, labels = torch.randn(16, 8), torch.arange(16) % 4
    proj, head = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(params, x, ctx):
        z = functional_call(proj, {k[5:]: v for k, v in params.items() if k.startswith("proj.")}, (x,))
        return MetaOutput(functional_call(head, {k[5:]: v for k, v in params.items() if k.startswith("head.")},
                                          (ctx.mix(z),)), {"proj": z}, {"proj": F.normalize(x, dim=-1)})

    reg = MetaRegularizer(forward, {"proj": dict(proj.named_parameters(prefix="proj")),
                                    None: dict(head.named_parameters(prefix="head"))}, sampler=MetaSampler(0))
    assert isinstance(reg.modulator.nets[2], nn.Identity) and reg.modulator.blocks == [8, 8, 0, 0]
    opt = torch.optim.SGD(list(proj.parameters()) + list(head.parameters()), lr=0.5)
    ce = F.cross_entropy(head(proj(feats)), labels)
    expected = [p - 0.5 * g for p, g in zip(head.parameters(), torch.autograd.grad(ce, list(head.parameters())))]
    first = reg.regularised_step(feats, labels, opt)
    assert all(torch.allclose(p, e, atol=1e-7) for p, e in zip(head.parameters(), expected))
    opt_mod = torch.optim.SGD(reg.modulator.parameters(), lr=0.01)
    for _ in range(20):
        metrics = reg.step(feats, labels, opt, opt_mod)
    assert metrics.meta_ran and metrics.ce < 0.7 * first.ce


def test_errors_name_what_is_wrong():
    p = nn.Parameter(torch.zeros(8))
    forward = lambda params, x, ctx: MetaOutput(x @ params["w"][:, None], {}, {})  # noqa: E731
    with pytest.raises(ValueError, match="'w' is in both groups 'a' and 'b'"):
        MetaRegularizer(forward, {"a": {"w": p}, "b": {"w": p}})
    with pytest.raises(ValueError, match=r"do not require grad"):
        MetaRegularizer(forward, {"a": {"w": torch.zeros(8)}})
    reg = MetaRegularizer(forward, {"a": {"w": p}})
    with pytest.raises(KeyError, match=r"no features for the term\(s\) \['a'\]"):
        reg.losses(reg.named_params(), torch.randn(3, 8), torch.zeros(3, dtype=torch.long))
    task = MetaTask(torch.tensor([True, False, False]), torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(ValueError, match="apply ctx.mix"):
        reg.query_loss(reg.named_params(), torch.randn(3, 8), torch.tensor([0, 1, 1]), task)


# ---------------------------------------------------------------------- (3) a host method's own model, unchanged
class CoOpPromptLearner(nn.Module):
    """As a CoOp-family repository writes it: a learned context between frozen start-token and class-token
    embeddings, assembled into one prompt per class."""

    def __init__(self, n_cls, n_ctx=2, width=16, length=7):
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(n_ctx, width) * 0.02)
        self.register_buffer("token_prefix", torch.randn(n_cls, 1, width))
        self.register_buffer("token_suffix", torch.randn(n_cls, length - 1 - n_ctx, width))
        self.n_cls = n_cls

    def forward(self):
        ctx = self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class TextEncoder(nn.Module):
    def __init__(self, width=16, out=8, length=7):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(length, width) * 0.1)
        self.attn = nn.MultiheadAttention(width, 2)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, out) * 0.3)
        self.register_buffer("mask", torch.full((length, length), float("-inf")).triu_(1))

    def forward(self, prompts, eot):
        x = (prompts + self.positional_embedding).permute(1, 0, 2)
        x = x + self.attn(x, x, x, need_weights=False, attn_mask=self.mask)[0]
        x = self.ln_final(x.permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


class ImageEncoder(nn.Module):
    def __init__(self, width=16, out=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 4, stride=4)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.proj = nn.Linear(width, out)

    def forward(self, image):
        x = self.conv(image).flatten(2).transpose(1, 2)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return self.proj(x.mean(1))


class CustomCLIP(nn.Module):
    """The shape of CoOp's CustomCLIP: its own prompt learner and forward (logits from normalised features)."""

    def __init__(self, n_cls):
        super().__init__()
        self.prompt_learner = CoOpPromptLearner(n_cls)
        self.text_encoder = TextEncoder()
        self.image_encoder = ImageEncoder()
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.register_buffer("eot", torch.full((n_cls,), 6))

    def forward(self, image):
        image_features = self.image_encoder(image)
        text_features = self.text_encoder(self.prompt_learner(), self.eot)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()


def host_setup(first_order=False):
    torch.manual_seed(0)
    model = CustomCLIP(n_cls=4).to(D)
    for name, p in model.named_parameters():
        p.requires_grad_(name == "prompt_learner.ctx")  # CoOp trains the context only
    with torch.no_grad():
        model.prompt_learner.ctx.normal_(0, 0.5)
        zero_shot = F.normalize(torch.randn(4, 8, dtype=D), dim=-1)
    forward = module_forward(model, features={"text": model.text_encoder}, references={"text": zero_shot},
                             mix_at=model.image_encoder)
    reg = MetaRegularizer(forward, {"text": {"prompt_learner.ctx": model.prompt_learner.ctx}}, weights={"text": 10.0},
                          blocks={"prompt_learner.ctx": 32}, dim_rate=4, adapt_lr=0.5, first_order=first_order,
                          sampler=MetaSampler(0))
    with torch.no_grad():
        for p in reg.modulator.parameters():
            p.mul_(4.0)
    images = torch.randn(5, 3, 8, 8, dtype=D)
    labels = torch.tensor([0, 1, 1, 2, 3])
    return model, reg, images, labels, zero_shot


def test_host_model_forward_is_its_own():
    model, reg, images, labels, zero_shot = host_setup()
    out = reg.forward(reg.named_params(), images, ForwardContext("train"))
    with torch.no_grad():
        assert torch.equal(out.logits, model(images))
        assert torch.equal(out.features["text"], model.text_encoder(model.prompt_learner(), model.eot))
    ctx = torch.zeros_like(model.prompt_learner.ctx)
    with torch.no_grad():
        own = model(images)  # the parameters are swapped only inside the call
        assert not torch.equal(reg.forward({"prompt_learner.ctx": ctx}, images, ForwardContext()).logits, own)
    assert not model.image_encoder._forward_hooks and not model.text_encoder._forward_hooks


def test_host_model_second_order_meta_gradient_matches_finite_differences():
    """nn.MultiheadAttention's fused kernels have no double backward: the regulariser runs the support pass
    under the math kernel, so the host's code needs no change even for the second-order meta step."""
    model, reg, images, labels, _ = host_setup()
    task = MetaTask(labels == 1, torch.tensor([0.2, 0.7], dtype=D), torch.tensor([2, 0]))

    def loss():
        return reg.meta_objective(reg.named_params(), images, labels, task)

    leaves = reg.params + list(reg.modulator.parameters())
    grads = torch.autograd.grad(loss(), leaves)
    gen = torch.Generator().manual_seed(5)
    for part in (slice(0, 1), slice(1, None)):
        direction = [torch.randn(p.shape, generator=gen, dtype=D) for p in leaves[part]]
        analytic = sum((g * d).sum() for g, d in zip(grads[part], direction)).item()
        numeric = directional_fd(loss, leaves[part], direction)
        assert abs(analytic - numeric) <= 1e-5 * max(abs(numeric), 1e-3), (part, analytic, numeric)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k != "prompt_learner.ctx"}
    opt = torch.optim.SGD([model.prompt_learner.ctx], lr=0.1, momentum=0.9)
    metrics = reg.step(images, labels, opt, torch.optim.SGD(reg.modulator.parameters(), lr=0.01))
    assert metrics.meta_ran and set(metrics.terms) == {"text"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())


def test_specs_order_is_the_modulator_order():
    from prometar.learners import TensorSpec

    tensors = {n: nn.Parameter(torch.zeros(k, 8)) for n, k in (("a", 1), ("b", 2), ("c", 3))}
    forward = lambda params, x, ctx: MetaOutput(x)  # noqa: E731
    specs = [TensorSpec("a", "text", 8), TensorSpec("b", "image", 16), TensorSpec("c", "text", 24)]
    reg = MetaRegularizer.from_specs(forward, specs, tensors)
    assert reg.names == ["a", "b", "c"] and reg.terms == ["text", "image", "text"]
    assert reg.modulator.blocks == [8, 16, 24] and reg.params[1] is tensors["b"]
    grouped = MetaRegularizer(forward, {"text": {"a": tensors["a"], "c": tensors["c"]}, "image": {"b": tensors["b"]}})
    assert grouped.names == ["a", "c", "b"] and grouped.modulator.blocks == [8, 8, 8]  # group by group, rows
    with pytest.raises(ValueError, match="order must list every tensor once"):
        MetaRegularizer(forward, {"text": {"a": tensors["a"]}}, order=["a", "b"])
