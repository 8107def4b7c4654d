"""Conv layers in spiking learning: which programs a conv net can learn, and why a target
cannot.

The semantics (a kernel entry is one synapse repeated at every output position; it moves
by the sum of its copies' updates) are in docs/spiking.md, "Conv layers in spiking
learning". That sum is the one step that is not per-synapse: :func:`check_conv_learning`
accepts the programs where every step can be computed so, :func:`conv_refusal` names the
limit (Lava: its learning engine updates each synapse from its own traces only).
"""

from __future__ import annotations

from typing import Any

from neurolocal.errors import LoweringError
from neurolocal.network import Network

__all__ = ["check_conv_learning", "conv_refusal", "LAVA_CONV_LIMIT"]

#: Why Lava (Loihi 2) cannot learn a conv layer, with the sources the claim rests on.
LAVA_CONV_LIMIT = (
    "Loihi 2's learning engine updates every synapse from its own pre and post traces and "
    "cannot learn a weight shared by many synapses: in lava-nc 0.10.0 the Conv process "
    "(lava/proc/conv/process.py, class Conv(AbstractProcess)) has no learning rule -- only "
    "LearningConnectionProcess subclasses such as LearningDense do -- and the learning "
    "engine's model (lava/magma/core/model/py/connection.py, _apply_learning_rules) "
    "updates the (post, pre) weight matrix elementwise, one synapse at a time, with no step "
    "that sums the updates of synapses sharing a kernel entry; a LearningDense holding one "
    "weight per copy would let the copies drift apart, which is no convolution")

BRIAN2_CONV_GAP = (
    "conv learning is not lowered to Brian2 yet (a missing feature, not a Brian2 limit): a "
    "conv layer would be Synapses with one weight per copy, and keeping the copies tied "
    "needs the summed kernel update written back to every copy at each epoch end, a "
    "reduction over the synapses sharing a kernel entry that the Brian2 lowering does not "
    "generate")


def conv_refusal(net: Network, target: str) -> str:
    """The message a target that cannot learn ``net``'s conv layers raises, naming the layer
    and the reason (a hardware limit where that is the reason)."""
    layer = min(net.convs)
    spec = net.convs[layer]
    what = (f"layer {layer} of this network is a convolution ({spec.out_channels} channels, "
            f"{spec.kernel}x{spec.kernel} kernel)")
    if target.startswith("lava"):
        why = LAVA_CONV_LIMIT
    elif target == "brian2":
        why = BRIAN2_CONV_GAP
    elif target == "spiking reference":
        why = ("ReferenceSimulator runs dense layers only; "
               "hardware.conv_reference.ConvReferenceSimulator runs conv nets")
    else:
        why = f"the {target} target runs dense layers only"
    return (f"the {target} target cannot learn conv layers: {what}; {why}. Conv nets learn "
            "spiking on snntorch (--target snntorch); or train in rate mode and run the net "
            "spiking with `neurolocal convert` (conversion handles conv layers on every "
            "target)")


def check_conv_learning(net: Network, program: Any, target: str) -> None:
    """Refuse, naming the statement and layer, what a conv net's spiking learning cannot run.

    Dense nets and the recurrent check go through :func:`..semantics.require_dense`. On a
    conv net: feedback tied to the forward weights of a conv layer (``transpose(W)`` needs
    W as a matrix) and noise phases (a noise epoch sends drive up W as a matrix) are refused.
    """
    from .semantics import require_dense

    if not net.convs or getattr(net, "recurrent", None):
        require_dense(net, target)
        return
    for fb in program.feedback:
        if fb.mode != "tied":
            continue
        for layer in range(1, net.depth):
            if layer + 1 in net.convs:
                raise LoweringError(
                    f"rule {program.rule.name}: feedback {fb.name} = {fb.scope}.{fb.source} -> "
                    f"{fb.target} via {fb.text}: its weights are the forward weights of layer "
                    f"{layer + 1}, a convolution, which have no dense matrix to copy; conv nets "
                    "learn spiking with feedback from the output (dfa, sdfa)")
    for ph in program.noise_phases:
        raise LoweringError(
            f"rule {program.rule.name}: noise phase {ph.name}: a noise epoch sends each hidden "
            "layer's noise-driven spikes up the forward weights as a matrix, which conv layers "
            f"(layer {min(net.convs)}) are not here; conv nets learn spiking with fixed "
            "feedback from the output (dfa, sdfa)")
