"""Conv layers in spiking learning on snntorch (the semantics of :mod:`..conv_spiking`).

The feature maps are the same ``snntorch.Synaptic`` cells as a dense layer's, one per map
neuron. The conv projection is ``F.conv2d`` over the whole epoch's (shifted) spike train at
once, the channel bias repeated over the positions. The kernel update runs the rule's
generated update function on rows that are (sample, position) pairs -- the pre compartments
unfolded into receptive fields (``F.unfold``, zero padding) plus the bias neuron, the post
compartments one row per position -- so each kernel entry receives the sum over its copies
of the rule's per-synapse update (divided by the batch size: the batch mean). A term reading
neither end is summed over the copies too: its coefficient is multiplied by the number of
positions (the global ``__positions`` of the generated function).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from neurolocal.network import Network
from neurolocal.rule import FORWARD
from neurolocal.symbols import Ref

from ..conv_spiking import check_conv_learning
from ..semantics import SpikingProgram
from .lower import _update_function
from .runtime import SnnTorchRunner, _with_bias

#: The generated function computing a conv layer's kernel increments.
CONV_UPDATE = "conv_update_W"
#: The global the generated conv update reads for the number of output positions.
POSITIONS = "__positions"


def conv_update_source(program: SpikingProgram) -> str:
    """``conv_update_W(pre, post, syn, g, n)`` over (sample, position) rows: the rule's
    forward update with every term that reads neither pre nor post scaled by the positions."""
    npos = Ref("glob", POSITIONS).symbol
    ups = []
    for up in program.updates_for(FORWARD):
        terms = tuple(replace(t, coef=t.coef * npos)
                      if t.separable and t.pre == 1 and t.post == 1 else t for t in up.terms)
        ups.append(replace(up, terms=terms))
    return "\n".join(_update_function(tuple(ups), CONV_UPDATE)) + "\n"


class ConvSnnTorchRunner(SnnTorchRunner):
    """:class:`.runtime.SnnTorchRunner` for nets with conv layers (dense layers as before)."""

    def __init__(self, net: Network, program: SpikingProgram, **options: Any):
        super().__init__(net, program, **options)
        import torch

        self.conv_source = conv_update_source(program)
        if program.updates_for(FORWARD):
            exec(compile(self.conv_source, f"<neurolocal snntorch conv program {program.name}>",
                         "exec"), self.mod)
        self.fanout = {}
        for layer, spec in net.convs.items():  # pre neuron -> how many map neurons it reaches
            ones = torch.ones(spec.out_channels, spec.in_channels, spec.kernel, spec.kernel,
                              dtype=self.dtype, device=self.device)
            grad = torch.ones(1, spec.out_channels, spec.out_height, spec.out_width,
                              dtype=self.dtype, device=self.device)
            self.fanout[layer] = torch.nn.grad.conv2d_input(
                (1, spec.in_channels, spec.in_height, spec.in_width), ones, grad,
                stride=spec.stride, padding=spec.padding).flatten()

    def _check_network(self, net: Network, program: SpikingProgram) -> None:
        check_conv_learning(net, program, "snntorch")

    def _inflow(self, layer: int, prev: Any) -> Any:
        spec = self.net.convs.get(layer)
        if spec is None:
            return super()._inflow(layer, prev)
        import torch.nn.functional as F

        steps, batch = prev.shape[:2]
        w = self.state[FORWARD][layer]["w"]
        self._events = self._events + (prev.sum((0, 1)) * self.fanout[layer]).sum()
        kernel = w[:, :-1].reshape(spec.out_channels, spec.in_channels, spec.kernel,
                                   spec.kernel)
        x = prev.reshape(steps * batch, spec.in_channels, spec.in_height, spec.in_width)
        out = F.conv2d(x, kernel, stride=spec.stride, padding=spec.padding)
        return out.reshape(steps, batch, spec.out_size)

    def _bias(self, layer: int) -> Any:
        spec = self.net.convs.get(layer)
        b = super()._bias(layer)
        return b if spec is None else b.repeat_interleave(spec.positions)

    def _forward_increment(self, fn, layer: int, pre: dict, post: dict, n: int) -> dict:
        spec = self.net.convs.get(layer)
        if spec is None:
            return super()._forward_increment(fn, layer, pre, post, n)
        ops = self.ops
        fields = {k: ops.patches(v, spec) for k, v in pre.items() if k in self._pre_reads}
        rows = _with_bias(fields, self.torch)  # receptive fields plus the bias neuron
        at = {k: ops.positions(v, spec) for k, v in post.items()}
        g = {**self.g, POSITIONS: float(spec.positions)}
        return self.mod[CONV_UPDATE](rows, at, self.state[FORWARD][layer], g, n)

