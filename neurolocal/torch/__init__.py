"""Torch-native training with a learning rule: wrap any ``nn.Module`` of Linear/Conv2d layers.

    import torch, torch.nn as nn
    from neurolocal.torch import local_rule

    model = local_rule(nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10)), "fa")
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()  # the rule's update -> .grad
        opt.step()

Not imported by ``import neurolocal``. See docs/tutorial-torch.md.
"""

from __future__ import annotations

from typing import Any

from .module import LocalRule, build


def local_rule(model: Any, rule: Any, *, allow_nonlocal: bool = False, input_shape=None,
               output: str | None = None, seed: int = 0, loss_reduction: str = "mean",
               fused: bool = True) -> LocalRule:
    """``model`` trained by ``rule`` through ordinary torch: ``loss.backward()`` fills each
    parameter's ``.grad`` with the rule's update, descent-signed, for any torch optimiser.

    ``rule``: a built-in name, a ``.rule`` file or a :class:`~neurolocal.rule.Rule`; its
    locality is checked here (a non-local rule needs ``allow_nonlocal=True``). ``model``: a
    chain of ``Linear``/``Conv2d`` layers with ReLU/Tanh/Sigmoid/Identity activations and
    ``Flatten`` (an ``nn.Sequential``, or a module whose forward torch.fx traces to one);
    other layers are refused by name. ``input_shape``: (channels, height, width) of one
    sample, needed when the model starts with a Conv2d. ``output``: the output activation
    the rule sees when the model ends with logits (default ``softmax``, for cross-entropy;
    ``linear`` for squared error); a model ending with Softmax/LogSoftmax/Sigmoid/Tanh gives
    its own. The teaching signal is ``N * dL/d(drive)`` of the loss the caller computes
    (``loss_reduction="sum"`` for a summed loss): the rule's target is ``r - teach``, which
    is the label under cross-entropy. ``seed``: the feedback weights' draw (the rate
    target's, for the same net and seed) and noise. ``fused=False`` forces the rate
    runner's generic program (tests).
    """
    from neurolocal.errors import NeurolocalError
    from neurolocal.rule import Rule
    from neurolocal.rules import get_rule

    if not isinstance(rule, Rule):
        rule = get_rule(str(rule))
    timed = rule.time_statements()
    if timed:
        raise NeurolocalError(
            f"local_rule: rule {rule.name} runs through time ({'; '.join(timed)}) and needs a "
            "recurrent layer; local_rule wraps feed-forward chains of Linear/Conv2d. Train "
            "recurrent networks with `neurolocal train --recurrent N`")
    return build(model, rule, allow_nonlocal=allow_nonlocal, input_shape=input_shape,
                 output=output, seed=seed, fused=fused, loss_reduction=loss_reduction)


__all__ = ["LocalRule", "local_rule"]
