"""The reference simulator for conv nets: the semantics of :mod:`.conv_spiking`, naively.

It extends :class:`.reference.ReferenceSimulator` with the conv projection and the kernel
update written as plain loops over output positions (numpy on each receptive field, no
unfolding, no convolution routine), so that it shares no code path with the conv targets it
checks (snntorch's ``F.conv2d`` / ``F.unfold``).
"""

from __future__ import annotations

import numpy as np

from neurolocal.network import ConvSpec, Network
from neurolocal.rule import FORWARD
from neurolocal.symbols import AXON_SIGNALS

from .conv_spiking import check_conv_learning
from .reference import ReferenceSimulator
from .semantics import SpikingProgram


def _padded(flat: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """(B, C*H*W) -> (B, C, H + 2p, W + 2p), the padding a never-firing neuron (0)."""
    x = flat.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
    p = spec.padding
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x


def _positions(spec: ConvSpec):
    """Every output position (row, column) with the top-left corner of its receptive field."""
    for oy in range(spec.out_height):
        for ox in range(spec.out_width):
            yield oy * spec.out_width + ox, oy * spec.stride, ox * spec.stride


class ConvReferenceSimulator(ReferenceSimulator):
    """:class:`.reference.ReferenceSimulator` for nets with conv layers (dense ones as before).

    ``_inflow``: each output position sums kernel x receptive field; ``_bias``: the channel's
    bias at each of its positions; ``_forward_increment``: the rule's terms evaluated for the
    copies at one output position at a time (pre: the receptive field plus the bias neuron,
    post: the channels at that position, syn: the kernel) and summed over the positions.
    """

    def _check_network(self, net: Network, program: SpikingProgram) -> None:
        check_conv_learning(net, program, "spiking reference")

    def _bias(self, layer: int) -> np.ndarray:
        spec = self.net.convs.get(layer)
        b = self.state[FORWARD][layer]["w"][:, -1]
        return b if spec is None else np.repeat(b, spec.positions)

    def _inflow(self, layer: int, spikes: np.ndarray) -> np.ndarray:
        spec = self.net.convs.get(layer)
        if spec is None:
            return super()._inflow(layer, spikes)
        k = spec.kernel
        x = _padded(np.asarray(spikes, np.float64), spec)
        kernel = self.state[FORWARD][layer]["w"][:, :-1].reshape(
            spec.out_channels, spec.in_channels, k, k)
        out = np.zeros((x.shape[0], spec.out_channels, spec.positions))
        for pos, y0, x0 in _positions(spec):
            field = x[:, :, y0:y0 + k, x0:x0 + k]
            out[:, :, pos] = np.einsum("bcij,ocij->bo", field, kernel)
        return out.reshape(x.shape[0], -1)

    def _forward_increment(self, fns, layer: int, pre: dict, post: dict, *,
                           per_sample: bool = False) -> np.ndarray:
        spec = self.net.convs.get(layer)
        if spec is None or per_sample:  # no conv net is timed (refused): dense or traces
            return super()._forward_increment(fns, layer, pre, post, per_sample=per_sample)
        k, syn = spec.kernel, self.state[FORWARD][layer]
        maps = {n: _padded(v, spec) for n, v in pre.items()}
        fills = {n: 1.0 if n in AXON_SIGNALS else 0.0 for n in pre}
        posts = {n: v.reshape(v.shape[0], spec.out_channels, spec.positions)
                 for n, v in post.items()}
        total = np.zeros_like(syn["w"])
        for pos, y0, x0 in _positions(spec):
            field = {}
            for n, m in maps.items():
                f = m[:, :, y0:y0 + k, x0:x0 + k].reshape(m.shape[0], -1)
                field[n] = np.concatenate([f, np.full((m.shape[0], 1), fills[n])], 1)
            here = {n: v[:, :, pos] for n, v in posts.items()}
            total = total + self._evaluate(fns, field, here, syn)
        return total
