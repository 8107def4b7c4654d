"""Kolen-Pollack on snntorch written by hand: the throughput baseline of the generated program.

The same network, neuron model, delays, windows, rule and surrogate as the generated program
(784-H-10, IF neurons reset to zero, rates over each layer's window, boxcar surrogate), as a
plain per-step loop with matrix products; the feedback weights learn with the forward
weights' update. ``tests/test_handwritten_baselines.py`` checks that it ends with the
reference simulator's weights.
"""

from __future__ import annotations


def handwritten_snntorch_kp(w1, w2, b, xs, ys, cfg, lr, wd, batch, gen):
    """A plain snntorch loop for 784-H-10 KP with the same semantics, written by hand.

    ``b`` (H x 10): the learned feedback weights; updated in place like ``w1``, ``w2``.
    """
    import snntorch as snn
    import torch

    t_steps = cfg.timesteps
    lif1 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    lif2 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    events = 0.0
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            x, y = xs[i:i + batch], ys[i:i + batch]
            n = len(x)
            s_in = (torch.rand((t_steps, *x.shape), generator=gen) < x).to(x.dtype)
            mem1, mem2 = lif1.reset_mem(), lif2.reset_mem()
            s0_prev = torch.zeros_like(x)
            s1_prev = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            c1 = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            c2 = torch.zeros(n, w2.shape[0], dtype=x.dtype)
            a1 = torch.zeros(n, w1.shape[0], dtype=x.dtype)
            for t in range(t_steps):
                i1 = s0_prev @ w1[:, :-1].T + w1[:, -1]
                i2 = s1_prev @ w2[:, :-1].T + (w2[:, -1] if t >= 1 else 0.0)  # bias window
                s1, mem1 = lif1(i1, mem1)
                s2, mem2 = lif2(i2, mem2)
                if t >= 1:  # layer 1's window: steps 1 .. T-1
                    a1 += i1
                c1 += s1
                c2 += s2
                s0_prev, s1_prev = s_in[t], s1.to(x.dtype)
            events += float(s_in.sum()) * w1.shape[0] + float(c1.sum()) * w2.shape[0]
            r0, r1, r2 = s_in.mean(0), c1 / (t_steps - 1), c2 / (t_steps - 2)
            d2 = r2 - y
            d1 = (d2 @ b.T) * (c1 > 0) * (a1 / (t_steps - 1) < 1.0)
            one = torch.ones(n, 1, dtype=x.dtype)
            dw2 = -lr / n * d2.T @ torch.cat([r1, one], 1) - lr * wd * w2
            dw1 = -lr / n * d1.T @ torch.cat([r0, one], 1) - lr * wd * w1
            db = -lr / n * r1.T @ d2 - lr * wd * b  # the same pair of signals as W2
            w2 += dw2
            w1 += dw1
            b += db
    return events
