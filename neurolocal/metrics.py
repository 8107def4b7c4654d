"""Alignment metrics: how close a local rule's feedback and updates come to backprop's."""

from __future__ import annotations

import math

import numpy as np

from .rule import FORWARD


def angle_degrees(a, b) -> float:
    """Angle between two arrays seen as vectors; 90 for a zero array."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 90.0
    return math.degrees(math.acos(float(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def feedback_angles(program) -> dict[str, float]:
    """Angle between each feedback matrix and the transpose of the path it stands in for.

    Feedback from the next layer is compared with W_{l+1}^T; feedback from the output
    (DFA) with (W_L ... W_{l+1})^T, the linear part of backprop's path.
    """
    net, out = program.net, {}
    for fb in net.rule.feedback.values():
        if fb.source.scope not in ("next", "output"):
            continue  # lateral / forward-direction projections stand in for no backprop path
        for layer in range(1, net.depth):
            top = layer + 1 if fb.source.scope == "next" else net.depth
            if any(k in net.convs for k in range(layer + 1, top + 1)):
                continue  # the path runs through a convolution: not one matrix
            b = program._np(program.feedback_matrix(fb, layer))
            path = program._np(program.state[FORWARD][layer + 1]["w"][:, :-1])
            if fb.source.scope == "output":
                for top in range(layer + 2, net.depth + 1):
                    path = program._np(program.state[FORWARD][top]["w"][:, :-1]) @ path
            out[f"{fb.name}{layer}"] = angle_degrees(b, path.T)
    return out


def _affine(h, w, spec):
    """Dense or convolutional forward map in torch (independent of the rate program's)."""
    if spec is None:
        return h @ w[:, :-1].T + w[:, -1]
    import torch.nn.functional as F

    x = h.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
    kernel = w[:, :-1].reshape(spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)
    return F.conv2d(x, kernel, w[:, -1], stride=spec.stride, padding=spec.padding).flatten(1)


def backprop_gradients(program, x, y) -> list[np.ndarray]:
    """Exact gradients of the cross-entropy with respect to each W (bias column included).

    Computed by torch autograd, independently of any rule description, so that the
    ``bp`` rule's own lowering is checked against it too.
    """
    import torch

    net = program.net
    ws = [torch.tensor(program._np(program.state[FORWARD][k]["w"]), dtype=torch.float64,
                       requires_grad=True) for k in range(1, net.depth + 1)]
    h = torch.as_tensor(np.asarray(program._np(program._to(x))), dtype=torch.float64)
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


def update_angles(program, x, y) -> dict[str, float]:
    """Angle between the rule's raw update of each W and the negative backprop gradient."""
    onehot = np.eye(program.net.sizes[-1], dtype=np.float32)[np.asarray(y)]
    comps = program.errors(program.forward(x), program._to(onehot))
    ups = program.updates(comps)
    grads = backprop_gradients(program, x, y)
    return {f"W{k}": angle_degrees(program._np(ups[(FORWARD, k)]["w"]), -grads[k - 1])
            for k in range(1, program.net.depth + 1)}


def activation_gradients(program, x, y) -> list[np.ndarray]:
    """Exact dL/dr_l of the summed cross-entropy for each hidden layer l = 1..L-1 (per sample).

    By torch autograd, independently of any rule: what activation relaxation's relaxed
    activations should reach.
    """
    import torch

    net = program.net
    h = torch.as_tensor(np.array(program._np(program._to(x)), dtype=np.float64))
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "linear": lambda z: z}
    hidden = []
    for k in range(1, net.depth + 1):
        w = torch.as_tensor(program._np(program.state[FORWARD][k]["w"]), dtype=torch.float64)
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


def relaxed_cosines(program, x, y, compartment: str = "x") -> dict[str, float]:
    """Cosine similarity, per hidden layer, between a relaxed compartment and dL/dr_l.

    ``compartment`` is what the rule relaxes towards the gradient (activation relaxation's
    ``x``). The sign is free: a rule may relax towards -dL/dr (predictive coding's errors).
    """
    onehot = np.eye(program.net.sizes[-1], dtype=np.float32)[np.asarray(y)]
    comps = program.errors(program.forward(x), program._to(onehot))
    out = {}
    for layer, g in enumerate(activation_gradients(program, x, y), start=1):
        v = program._np(comps[layer][compartment]).astype(np.float64).ravel()
        g = g.ravel()
        denom = np.linalg.norm(v) * np.linalg.norm(g)
        out[f"{compartment}{layer}"] = float(v @ g / denom) if denom else 0.0
    return out
