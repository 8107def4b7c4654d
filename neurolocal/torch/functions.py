"""The autograd Functions that carry a rule's updates into ``.grad``.

Both are generated from the rule description by the rate target's generators; none knows
a rule by name. ``forward`` runs the wrapped chain's forward sweep and returns the last
layer's drive; ``backward`` receives the loss gradient there, turns it into the rule's
teaching signal (``teach = N * dL/da_L``, the rule's target is ``r - teach``), runs the
rule's equations and returns each update, with the descent sign, as the gradient of its
parameter (weights, biases, learned feedback weights; fixed feedback gets none).

- :class:`FusedRule`: the fused rate program (:mod:`neurolocal.hardware.rate.fused`,
  ``teach="grad"``, fresh tensors), for rules that need one sweep;
- :class:`GenericRule`: the rate runner's own program (relax and noise phases, noise
  sources, held values), its state refreshed from the module's tensors on each call.
"""

from __future__ import annotations

import torch

from neurolocal.rule import FORWARD


def _grad_dtype(grads: list, tensors) -> list:
    """Each gradient in its parameter's dtype (autocast computes in lower precision)."""
    return [g if g is None or g.dtype == t.dtype else g.to(t.dtype)
            for g, t in zip(grads, tensors)]


class FusedRule(torch.autograd.Function):
    """``apply(wrapper, x, *tensors)`` -> the output drive; see the module docstring."""

    @staticmethod
    def forward(ctx, wrapper, x, *tensors):
        W, b, F = wrapper.unpack(tensors)
        saved, out = wrapper.program.forward(x, W, b)
        ctx.wrapper, ctx.params = wrapper, (W, b, F)
        ctx.autocast = _autocast_state(x)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, grad):
        wrapper = ctx.wrapper
        W, b, F = ctx.params
        GW, Gb = [None] * len(W), [None] * len(W)
        GF = {name: {} for name in wrapper.learned}
        teach = wrapper.teaching(grad)
        if ctx.autocast is None:
            wrapper.program.backward(ctx.saved_tensors, teach, W, b, F, wrapper.g, GW, Gb, GF)
            grads = wrapper.pack(GW, Gb, GF)
        else:
            with torch.autocast(ctx.autocast[0], dtype=ctx.autocast[1]):
                wrapper.program.backward(ctx.saved_tensors, teach, W, b, F, wrapper.g, GW,
                                         Gb, GF)
            grads = _grad_dtype(wrapper.pack(GW, Gb, GF), wrapper.tensors())
        ctx.params = None
        return (None, None, *grads)


class GenericRule(torch.autograd.Function):
    """As :class:`FusedRule`, on the rate runner's generic program (float32 under autocast)."""

    @staticmethod
    def forward(ctx, wrapper, x, *tensors):
        runner = wrapper.runner(tensors, x.device)
        noisy = wrapper.training and bool(runner.rule.noise)
        with torch.autocast(x.device.type, enabled=False):
            x = x.flatten(1).float()
            comps = runner.forward(x, noisy=noisy)
            clean = runner.forward(x) if noisy and runner.uses_slow else None
        ctx.wrapper, ctx.comps, ctx.clean = wrapper, comps, clean
        ctx.save_for_backward(*tensors)
        return comps[-1]["a"].clone()

    @staticmethod
    def backward(ctx, grad):
        wrapper = ctx.wrapper
        tensors = ctx.saved_tensors
        runner = wrapper.runner(tensors, grad.device)
        with torch.autocast(grad.device.type, enabled=False):
            ups = _generic_updates(runner, ctx.comps, ctx.clean,
                                   wrapper.teaching(grad).float())
        depth = runner.net.depth
        GW, Gb = [None] * (depth + 1), [None] * (depth + 1)
        GF: dict = {name: {} for name in wrapper.learned}
        W, b, _ = wrapper.unpack(tensors)
        for (proj, layer), d in ups.items():
            if proj == FORWARD:
                GW[layer] = d["w"][:, :-1].reshape(W[layer].shape)
                Gb[layer] = d["w"][:, -1].contiguous() if b[layer] is not None else None
            elif proj in GF:
                GF[proj][layer] = d["w"]
        ctx.comps = ctx.clean = None
        return (None, None, *_grad_dtype(wrapper.pack(GW, Gb, GF), tensors))


def _generic_updates(runner, comps: list, clean: list | None, teach) -> dict:
    """The rate runner's descent directions for a forward sweep and a teaching signal."""
    target = comps[-1]["r"] - teach
    if clean is not None:  # slow(X): X in the same sweep without the noise
        for c, s in zip(comps, runner.errors(clean, target)):
            c.update({f"{k}~slow": v for k, v in s.items()})
    comps = runner.errors(comps, target)
    ups = runner.updates(comps, descent=True)
    for name, ph in runner.rule.phases.items():
        if ph.kind == "noise":
            ups.update(runner.mirror_updates(name, comps[0]["r"].shape[0], descent=True))
    return ups


def _autocast_state(x) -> tuple | None:
    """The autocast (device type, dtype) active in forward, or None."""
    kind = x.device.type
    if kind in ("cpu", "cuda") and torch.is_autocast_enabled(kind):
        return kind, torch.get_autocast_dtype(kind)
    return None
