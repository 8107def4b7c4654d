"""FA, DFA and Kolen-Pollack on an MLP written by hand: the rate program's speed baselines.

What an expert writes without autograd: plain torch matrix products for a ReLU MLP with a
softmax output, the updates as gradients (``.grad``) for a torch optimiser; weights and
biases are separate tensors, as ``nn.Linear`` keeps them. The rules' own step ``lr`` is
folded into the batch mean (``s = lr / n`` on the small operand), so that these loops and the
generated program hand the optimiser the same numbers; ``tests/test_rate_speed_baselines.py``
checks that they do. ``W[k]``: (n_{k+1}, n_k); ``B[k]``: the feedback into hidden layer k+1
(FA, KP: (n_{k+1}, n_{k+2}); DFA: (n_{k+1}, n_out)).
"""

from __future__ import annotations

import torch


def _forward(W, b, x):
    hs = [x]
    for k in range(len(W) - 1):
        hs.append(torch.relu(torch.addmm(b[k], hs[-1], W[k].t())))
    return hs, torch.softmax(torch.addmm(b[-1], hs[-1], W[-1].t()), 1)


def fa_step(W, b, B, x, y, lr, opt) -> None:
    """Feedback alignment: delta_k = (B_k delta_{k+1}) * f'(a_k)."""
    hs, p = _forward(W, b, x)
    d = (p - y) * (lr / len(x))
    for k in range(len(W) - 1, -1, -1):
        W[k].grad = d.t() @ hs[k]
        b[k].grad = d.sum(0)
        if k:
            d = (d @ B[k - 1].t()) * (hs[k] > 0)
    opt.step()


def dfa_step(W, b, B, x, y, lr, opt) -> None:
    """Direct feedback alignment: delta_k = (B_k e) * f'(a_k), e the output error."""
    hs, p = _forward(W, b, x)
    e = (p - y) * (lr / len(x))
    for k in range(len(W) - 1, -1, -1):
        d = e if k == len(W) - 1 else (e @ B[k].t()) * (hs[k + 1] > 0)
        W[k].grad = d.t() @ hs[k]
        b[k].grad = d.sum(0)
    opt.step()


def kp_step(W, b, B, x, y, lr, wd, opt) -> None:
    """Kolen-Pollack: as FA, and B_k learns dB = dW^T (its own weight decay included)."""
    hs, p = _forward(W, b, x)
    d = (p - y) * (lr / len(x))
    c = lr * wd
    for k in range(len(W) - 1, -1, -1):
        g = d.t() @ hs[k]
        W[k].grad = g + c * W[k]
        b[k].grad = d.sum(0) + c * b[k]
        if k:
            B[k - 1].grad = c * B[k - 1] + g.t()  # B's layout: fused Adam reads .grad flat
            d = (d @ B[k - 1].t()) * (hs[k] > 0)
    opt.step()


STEPS = {"fa": fa_step, "dfa": dfa_step, "kp": kp_step}
