"""The fused program bound to a rate runner's state: views, one gradient buffer, torch optimisers.

The runner keeps every forward projection as one (n_out, n_in + 1) tensor, bias last; the
fused program reads weight and bias as two views of it and writes the descent into the
matching views of one flat buffer, so that each parameter's ``.grad`` is set once and never
copied, a data-parallel all-reduce is one call (:attr:`RateRunner.reduce`), and torch's own
optimisers (fused kernels where torch has them) take the step.
"""

from __future__ import annotations

from typing import Any

from neurolocal.rule import FORWARD

from .fused import FusedProgram, chain_of
from .optim import Optimiser


def _fused_kernels_ok(device) -> bool:
    """Does torch have fused Adam/SGD kernels for ``device`` (CPU since torch 2.4, CUDA)?"""
    import torch

    try:
        p = torch.zeros(1, device=device, requires_grad=True)
        torch.optim.Adam([p], fused=True)
        torch.optim.SGD([p], lr=1.0, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def torch_optimiser(opt: Optimiser, params: list, device) -> Any:
    """The torch optimiser that takes ``opt``'s step on ``params`` (descent gradients).

    ``adam`` is Adam; ``momentum`` is SGD with momentum (v = mu v - g; w += lr v, what
    :class:`Optimiser` does with g = -dw); ``sgd`` plain SGD. Kept in ``opt.slots``, keyed
    by the parameters, so one :class:`Optimiser` carries its state from step to step.
    """
    import torch

    key = tuple(id(p) for p in params)
    held = opt.slots.get("torch")
    if held is not None and held[0] == key:
        return held[1]
    kw = {"fused": True} if _fused_kernels_ok(device) else {"foreach": True}
    if opt.kind == "adam":
        made = torch.optim.Adam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, **kw)
    else:
        made = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum if
                               opt.kind == "momentum" else 0.0, **kw)
    opt.slots["torch"] = (key, made)
    return made


class KernelStep:
    """``opt``'s step by torch's fused Adam/SGD kernels, called the way torch.optim calls them.

    The same kernels and arithmetic as ``torch.optim.Adam(fused=True)`` /
    ``torch.optim.SGD(fused=True)`` (tests check the bits), without the optimiser's per-step
    Python bookkeeping, which costs a tenth of a small net's step. Where torch has no fused
    kernel for the device, :func:`torch_optimiser` takes the step instead.
    """

    def __init__(self, opt: Optimiser, params: list, grads: list):
        import torch

        self.torch, self.kind, self.opt = torch, opt.kind, opt
        self.params, self.grads = params, grads
        self.fallback = None
        if not (_fused_kernels_ok(params[0].device) and hasattr(torch, "_fused_adam_")
                and hasattr(torch, "_fused_sgd_")):
            self.fallback = torch_optimiser(opt, params, params[0].device)
            return
        if self.kind == "adam":
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
            self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]
        self.buf = [torch.empty_like(p) for p in params] if self.kind == "momentum" else []
        self.first = True

    def step(self) -> None:
        opt, torch = self.opt, self.torch
        if self.fallback is not None:
            for p, g in zip(self.params, self.grads):
                if p.grad is not g:
                    p.grad = g
            for group in self.fallback.param_groups:
                group["lr"] = opt.lr
            self.fallback.step()
            return
        if self.kind == "adam":
            torch._foreach_add_(self.steps, 1)
            torch._fused_adam_(self.params, self.grads, self.m, self.v, [], self.steps,
                               amsgrad=False, lr=opt.lr, beta1=opt.betas[0],
                               beta2=opt.betas[1], weight_decay=0.0, eps=opt.eps,
                               maximize=False, grad_scale=None, found_inf=None)
        else:
            torch._fused_sgd_(self.params, self.grads, self.buf, weight_decay=0.0,
                              momentum=opt.momentum if self.kind == "momentum" else 0.0,
                              lr=opt.lr, dampening=0.0, nesterov=False, maximize=False,
                              is_first_step=self.first and self.kind == "momentum",
                              grad_scale=None, found_inf=None)
        self.first = False


def kernel_step(opt: Optimiser, params: list, grads: list) -> KernelStep:
    """The :class:`KernelStep` of ``opt`` for ``params`` (kept in ``opt.slots``)."""
    key = (tuple(id(p) for p in params), tuple(id(g) for g in grads))
    held = opt.slots.get("kernel")
    if held is None or held[0] != key:
        held = (key, KernelStep(opt, params, grads))
        opt.slots["kernel"] = held
    return held[1]


class FusedBinding:
    """A runner's fused program with its parameter views and gradient slots."""

    def __init__(self, runner):
        import torch

        self.runner = runner
        net = runner.net
        self.prog = FusedProgram(runner.rule, chain_of(net))
        self.depth = net.depth
        self.params = [runner.state[FORWARD][k]["w"] for k in range(1, net.depth + 1)]
        for name in self.prog.learned:
            self.params += [runner.state[name][k]["w"] for k in range(1, net.depth)]
        self._refs = [runner.state[FORWARD][k] for k in range(1, net.depth + 1)]
        for name in self.prog.learned:
            self._refs += [runner.state[name][k] for k in range(1, net.depth)]
        self._kernel: tuple | None = None  # (Optimiser, its KernelStep)
        total = sum(p.numel() for p in self.params)
        self.flat = torch.zeros(total, dtype=self.params[0].dtype, device=self.params[0].device)
        self.grads, offset = [], 0
        for p in self.params:
            self.grads.append(self.flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        self.W, self.b, self.GW, self.Gb = [None], [None], [None], [None]
        for k in range(1, net.depth + 1):
            w, g = self.params[k - 1], self.grads[k - 1]
            spec = net.convs.get(k)
            shape = (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel) if spec \
                else None
            self.W.append(w[:, :-1].view(shape) if shape else w[:, :-1])
            self.GW.append(g[:, :-1].view(shape) if shape else g[:, :-1])
            self.b.append(w[:, -1])
            self.Gb.append(g[:, -1])
        self.F = {fb: {k: runner.state[fb][k]["w"] for k in range(1, net.depth)}
                  for fb in runner.rule.feedback if runner.state.get(fb)}
        self.GF, i = {}, net.depth
        for name in self.prog.learned:
            self.GF[name] = {}
            for k in range(1, net.depth):
                self.GF[name][k] = self.grads[i]
                i += 1

    @property
    def valid(self) -> bool:
        """False once the runner's state tensors were replaced (the views would be stale)."""
        return all(d["w"] is p for d, p in zip(self._refs, self.params))

    def descent(self, x, target) -> None:
        """Forward sweep and the rule's descent directions into :attr:`flat`."""
        saved, _ = self.prog.forward(x, self.W, self.b)
        self.prog.backward(saved, target, self.W, self.b, self.F, self.runner.g, self.GW,
                           self.Gb, self.GF)

    def step(self, x, target, opt: Optimiser) -> None:
        """One step: descent, the all-reduce when distributed, the optimiser's kernel."""
        self.descent(x, target)  # nothing here requires grad: no autograd graph is kept
        if self.runner.reduce is not None:
            self.runner.reduce([self.flat])
        if self._kernel is None or self._kernel[0] is not opt:
            self._kernel = (opt, kernel_step(opt, self.params, self.grads))
        opt.step()
        self._kernel[1].step()
