"""Backpropagation through time by torch autograd: the non-local reference for recurrent nets.

Written from the network's dynamics alone (no rule description), so that it checks the
``bptt`` rule's lowering as well as it measures how far a local rule's updates are from the
gradient. A recurrent layer: ``a_t = W x_t + b + R r_{t-1}``, ``r_t = leak * r_{t-1} +
(1 - leak) * f(a_t)``, ``r_0 = 0``; the loss is the cross-entropy of the output at the last step.
"""

from __future__ import annotations

import numpy as np

from neurolocal.network import Network
from neurolocal.rule import FORWARD, RECURRENT

from .metrics import angle_degrees


def _acts(torch):
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "linear": lambda z: z}


def sequence_logits(net: Network, x, params: dict):
    """The output drive at the last step, in torch, from ``params[(proj, layer)]``."""
    import torch

    acts = _acts(torch)
    h = x  # (batch, steps, features)
    for layer in range(1, net.depth + 1):
        w = params[(FORWARD, layer)]
        drive = h @ w[:, :-1].T + w[:, -1]
        if layer == net.depth:
            return drive[:, -1]
        f = acts[net.hidden_activation]
        if layer not in net.recurrent:
            h = f(drive)
            continue
        rec, leak = params[(RECURRENT, layer)], net.leak(layer)
        r = torch.zeros_like(drive[:, 0])
        out = []
        for t in range(drive.shape[1]):
            r = leak * r + (1 - leak) * f(drive[:, t] + r @ rec.T)
            out.append(r)
        h = torch.stack(out, 1)
    raise AssertionError("unreachable")


def network_params(net: Network, *, grad: bool = True, dtype=None) -> dict:
    """Every forward and recurrent weight of ``net`` as a torch tensor (float64 by default)."""
    import torch

    dtype = dtype or torch.float64
    out = {(FORWARD, k): torch.tensor(np.asarray(net.state[FORWARD][k]["w"]), dtype=dtype)
           for k in range(1, net.depth + 1)}
    for k in sorted(net.recurrent):
        out[(RECURRENT, k)] = torch.tensor(np.asarray(net.state[RECURRENT][k]["w"]), dtype=dtype)
    for v in out.values():
        v.requires_grad_(grad)
    return out


def sequence_loss(net: Network, logits, y):
    """Cross-entropy (softmax output) or squared error of the output at the last step."""
    import torch

    y = torch.tensor(np.array(y), dtype=torch.long)
    if net.output_activation == "softmax":
        return torch.nn.functional.cross_entropy(logits, y)
    onehot = torch.nn.functional.one_hot(y, net.sizes[-1]).to(logits.dtype)
    out = _acts(torch)[net.output_activation](logits)
    return 0.5 * ((out - onehot) ** 2).sum(1).mean()


def bptt_gradients(net: Network, x, y) -> dict[tuple[str, int], np.ndarray]:
    """Exact gradients of the last step's loss with respect to every W and R (float64)."""
    import torch

    params = network_params(net)
    xt = torch.tensor(np.array(x, np.float32), dtype=torch.float64)
    sequence_loss(net, sequence_logits(net, xt, params), y).backward()
    return {k: v.grad.numpy() for k, v in params.items()}


def recurrent_update_angles(runner, x, y) -> dict[str, float]:
    """Angle between the rule's update of each W and R over a batch of sequences and the
    negative BPTT gradient (``runner``: a recurrent rate runner)."""
    onehot = np.eye(runner.net.sizes[-1], dtype=np.float32)[np.asarray(y)]
    ups = runner.raw_updates(x, onehot)
    grads = bptt_gradients(runner.sync(), x, y)
    return {f"{proj}{layer}": angle_degrees(ups[(proj, layer)], -grads[(proj, layer)])
            for proj, layer in grads if (proj, layer) in ups}


class BpttRunner:
    """Training by BPTT (torch autograd, float32) from a network's weights, with the rate
    targets' Adam: the reference row of the recurrent benchmarks. ``learn``/``predict``/
    ``sync`` as a target's runner; ``opt.lr`` is Adam's step (decayed by the caller)."""

    target = "bptt (autograd)"

    def __init__(self, net: Network, *, lr: float = 3e-3, batch_size: int = 50):
        import torch

        self.net, self.batch_size, self.torch = net, int(batch_size), torch
        self.params = network_params(net, dtype=torch.float32)
        self.optim = torch.optim.Adam(list(self.params.values()), lr=lr, foreach=True)
        self.opt = self  # the training loop's handle on the step size

    @property
    def lr(self) -> float:
        return float(self.optim.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optim.param_groups:
            group["lr"] = float(value)

    def learn(self, x, onehot) -> None:
        torch = self.torch
        labels = np.asarray(onehot).argmax(-1)
        for i in range(0, len(x), self.batch_size):
            xb = torch.tensor(np.array(x[i:i + self.batch_size], np.float32))
            loss = sequence_loss(self.net, sequence_logits(self.net, xb, self.params),
                                 labels[i:i + self.batch_size])
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()

    def predict(self, x) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            out = [sequence_logits(self.net, torch.tensor(np.array(x[i:i + 1000], np.float32)),
                                   self.params).numpy() for i in range(0, len(x), 1000)]
        return np.concatenate(out) if out else np.zeros((0, self.net.sizes[-1]), np.float32)

    def sync(self) -> Network:
        for (proj, layer), v in self.params.items():
            self.net.state[proj][layer]["w"] = v.detach().numpy().astype(np.float32)
        return self.net
