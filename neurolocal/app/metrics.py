"""Alignment metrics: how close a local rule's feedback and updates come to backprop's."""

from __future__ import annotations

import math

import numpy as np

from neurolocal.feedback_weights import evaluate_weights
from neurolocal.network import Network
from neurolocal.rule import FORWARD, FeedbackDecl


def _numpy(a) -> np.ndarray:
    """numpy view of an array or (CPU/CUDA) tensor."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def cosine(a, b) -> float:
    """Cosine similarity of two arrays seen as vectors; 0 for a zero array."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na and nb else 0.0


def angle_degrees(a, b) -> float:
    """Angle between two arrays seen as vectors; 90 for a zero array."""
    return math.degrees(math.acos(float(np.clip(cosine(a, b), -1.0, 1.0))))


def feedback_matrix(net: Network, fb: FeedbackDecl, layer: int) -> np.ndarray:
    """The feedback weights into ``layer`` as the rule's weight expression defines them."""
    stored = np.asarray(net.state[fb.name][layer]["w"], dtype=np.float64)
    if net.rule.is_learned(fb.name):
        return stored
    forward = None
    if fb.source.scope == "next":
        def forward():
            return np.asarray(net.state[FORWARD][layer + 1]["w"][:, :-1], dtype=np.float64)
    return evaluate_weights(fb.weights, name=fb.name, text=fb.weights_text, stored=stored,
                            xp=np, forward=forward, resample=lambda: stored,
                            where="for an alignment angle")


def feedback_angles(net: Network) -> dict[str, float]:
    """Angle between each feedback matrix and the transpose of the path it stands in for.

    Feedback from the next layer is compared with W_{l+1}^T; feedback from the output
    (DFA) with (W_L ... W_{l+1})^T, the linear part of backprop's path. Read from the
    network's state, so every target (which writes its weights back) reports the same way.
    """
    out = {}
    for fb in net.rule.feedback.values():
        if fb.source.scope not in ("next", "output"):
            continue  # lateral / forward-direction projections stand in for no backprop path
        for layer in range(1, net.depth):
            top = layer + 1 if fb.source.scope == "next" else net.depth
            if any(k in net.convs for k in range(layer + 1, top + 1)):
                continue  # the path runs through a convolution: not one matrix
            path = np.asarray(net.state[FORWARD][layer + 1]["w"][:, :-1], dtype=np.float64)
            for k in range(layer + 2, top + 1):
                path = np.asarray(net.state[FORWARD][k]["w"][:, :-1], dtype=np.float64) @ path
            out[f"{fb.name}{layer}"] = angle_degrees(feedback_matrix(net, fb, layer), path.T)
    return out


def _affine(h, w, spec):
    """Dense or convolutional forward map in torch (independent of the rate program's)."""
    if spec is None:
        return h @ w[:, :-1].T + w[:, -1]
    import torch.nn.functional as F

    x = h.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
    kernel = w[:, :-1].reshape(spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)
    return F.conv2d(x, kernel, w[:, -1], stride=spec.stride, padding=spec.padding).flatten(1)


def backprop_gradients(net: Network, x, y) -> list[np.ndarray]:
    """Exact gradients of the cross-entropy with respect to each W (bias column included).

    Computed by torch autograd from the network's weights, independently of any rule
    description, so that the ``bp`` rule's own lowering is checked against it too.
    """
    import torch

    ws = [torch.tensor(np.asarray(net.state[FORWARD][k]["w"], np.float32), dtype=torch.float64,
                       requires_grad=True) for k in range(1, net.depth + 1)]
    h = torch.as_tensor(_numpy(x).astype(np.float32), dtype=torch.float64)
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "linear": lambda z: z}
    for k, w in enumerate(ws, start=1):
        a = _affine(h, w, net.convs.get(k))
        h = a if k == net.depth else acts[net.hidden_activation](a)
    y = torch.as_tensor(np.array(y), dtype=torch.long)
    if net.output_activation == "softmax":
        loss = torch.nn.functional.cross_entropy(h, y)
    else:
        onehot = torch.nn.functional.one_hot(y, net.sizes[-1]).to(torch.float64)
        loss = 0.5 * ((acts[net.output_activation](h) - onehot) ** 2).sum(1).mean()
    loss.backward()
    return [w.grad.numpy() for w in ws]


def update_angles(runner, x, y) -> dict[str, float]:
    """Angle between the rule's raw update of each W and the negative backprop gradient.

    ``runner``: a rate runner (its ``forward``/``errors``/``updates`` give the update).
    """
    onehot = np.eye(runner.net.sizes[-1], dtype=np.float32)[np.asarray(y)]
    comps = runner.errors(runner.forward(x), runner.asarray(onehot))
    ups = runner.updates(comps)
    grads = backprop_gradients(runner.sync(), x, y)
    return {f"W{k}": angle_degrees(runner.to_numpy(ups[(FORWARD, k)]["w"]), -grads[k - 1])
            for k in range(1, runner.net.depth + 1)}


def spiking_update_angles(runner, x, y, *, seed: int = 0) -> dict[str, float]:
    """Spiking targets: the angle between the rule's update of each W over one sample
    presentation of ``x`` (all its learning epochs, weights held) and the negative backprop
    gradient of the rate network with the same weights (rate mode's keys: W1, W2, ...).

    The update comes from the spiking reference simulator on the target's synced network and
    lowered program, so every spiking target (snntorch, Brian2, Lava) reports it the same way.
    """
    from neurolocal.hardware.encoding import encode_input
    from neurolocal.hardware.reference import ReferenceSimulator

    program = getattr(runner, "program", None)
    program = getattr(program, "spiking", program)  # a Lava runner's LoihiProgram
    if program is None and hasattr(runner, "lp"):
        program = runner.lp.spiking
    net = runner.sync()
    if net.convs:  # conv nets: the conv reference (naive loops over positions)
        from neurolocal.hardware.conv_reference import ConvReferenceSimulator as ReferenceSimulator
    ref = ReferenceSimulator(net, program, seed=seed)
    x = np.asarray(_numpy(x), np.float64)
    onehot = np.eye(net.sizes[-1])[np.asarray(y)]
    spikes = encode_input(x, program.config, seed=np.random.default_rng(seed))
    incs = ref.run_epoch(np.asarray(spikes, np.float64), onehot, apply=False)["increments"]
    grads = backprop_gradients(net, x, y)
    return {f"W{k}": angle_degrees(incs[(FORWARD, k)]["w"], -grads[k - 1])
            for k in range(1, net.depth + 1) if (FORWARD, k) in incs}


def activation_gradients(net: Network, x, y) -> list[np.ndarray]:
    """Exact dL/dr_l of the summed cross-entropy for each hidden layer l = 1..L-1 (per sample).

    By torch autograd, independently of any rule: what activation relaxation's relaxed
    activations should reach.
    """
    import torch

    h = torch.as_tensor(_numpy(x).astype(np.float32).astype(np.float64))
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "linear": lambda z: z}
    hidden = []
    for k in range(1, net.depth + 1):
        w = torch.as_tensor(np.asarray(net.state[FORWARD][k]["w"], np.float32),
                            dtype=torch.float64)
        a = _affine(h, w, net.convs.get(k))
        if k == net.depth:
            h = a
            break
        h = acts[net.hidden_activation](a)
        if not hidden:
            h = h.detach().requires_grad_(True)  # nothing below the first hidden layer matters
        hidden.append(h)
    y = torch.as_tensor(np.array(y, dtype=np.int64))
    if net.output_activation == "softmax":
        loss = torch.nn.functional.cross_entropy(h, y, reduction="sum")
    else:
        onehot = torch.nn.functional.one_hot(y, net.sizes[-1]).to(torch.float64)
        loss = 0.5 * ((acts[net.output_activation](h) - onehot) ** 2).sum()
    grads = torch.autograd.grad(loss, hidden) if hidden else []
    return [g.numpy() for g in grads]


def relaxed_cosines(runner, x, y, compartment: str = "x") -> dict[str, float]:
    """Cosine similarity, per hidden layer, between a relaxed compartment and dL/dr_l.

    ``compartment`` is what the rule relaxes towards the gradient (activation relaxation's
    ``x``). The sign is free: a rule may relax towards -dL/dr (predictive coding's errors).
    ``runner``: a rate runner.
    """
    onehot = np.eye(runner.net.sizes[-1], dtype=np.float32)[np.asarray(y)]
    comps = runner.errors(runner.forward(x), runner.asarray(onehot))
    out = {}
    for layer, g in enumerate(activation_gradients(runner.sync(), x, y), start=1):
        out[f"{compartment}{layer}"] = cosine(runner.to_numpy(comps[layer][compartment]), g)
    return out
