"""PAL on snntorch written by hand: the throughput baseline of the generated program.

784-H-10, IF neurons reset to zero; each sample is ``epochs`` learning epochs of T/epochs
steps (the neurons run on, the counts restart); every hidden neuron gets its own noise
current into the voltage, drawn per learning epoch; slow(X) is the normalised low-pass over
the sample's epochs; the feedback weights learn from the noise and the fast part of the
drive above. The same semantics as the generated program, as a plain loop;
``tests/test_handwritten_baselines.py`` checks it against the reference simulator.
"""

from __future__ import annotations

import math


def handwritten_snntorch_pal(w1, w2, b, xs, ys, cfg, g, batch, gen, *, epochs, tau_slow):
    """A plain snntorch loop for 784-H-10 PAL (``g``: lr, lr_b, alpha, sigma).

    Random draws from ``gen``, per batch: the input spikes (T, n, 784) uniforms, then per
    learning epoch the hidden noise (n, H) normals.
    """
    import snntorch as snn
    import torch

    t_steps, e = cfg.timesteps, cfg.timesteps // epochs
    dec = math.exp(-e / tau_slow)
    lif1 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    lif2 = snn.Leaky(beta=1.0, threshold=1.0, reset_mechanism="zero", reset_delay=False,
                     surrogate_disable=True)
    h, o = w1.shape[0], w2.shape[0]
    events = 0.0
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            x, y = xs[i:i + batch], ys[i:i + batch]
            n = len(x)
            s_in = (torch.rand((t_steps, *x.shape), generator=gen) < x).to(x.dtype)
            mem1, mem2 = lif1.reset_mem(), lif2.reset_mem()
            in1 = torch.zeros(n, h, dtype=x.dtype)  # the input in flight (next step's)
            in2 = torch.zeros(n, o, dtype=x.dtype)
            slow = {"a2": 0.0, "d1": 0.0, "d2": 0.0, "norm": 0.0}
            for m in range(epochs):
                xi = g["sigma"] * torch.randn((n, h), generator=gen, dtype=x.dtype)
                c0, c1 = torch.zeros(n, 784, dtype=x.dtype), torch.zeros(n, h, dtype=x.dtype)
                c2 = torch.zeros(n, o, dtype=x.dtype)
                a1, a2 = torch.zeros(n, h, dtype=x.dtype), torch.zeros(n, o, dtype=x.dtype)
                for t in range(m * e, (m + 1) * e):
                    i1 = in1 + w1[:, -1]
                    i2 = in2 + (w2[:, -1] if t >= 1 else 0.0)  # the bias window
                    s1, mem1 = lif1(i1 + xi, mem1)  # the noise goes into the voltage
                    s2, mem2 = lif2(i2, mem2)
                    if t >= 1:
                        a1 += i1
                    if t >= 2:
                        a2 += i2
                    c0 += s_in[t]
                    c1 += s1
                    c2 += s2
                    in1, in2 = s_in[t] @ w1[:, :-1].T, s1.to(x.dtype) @ w2[:, :-1].T
                events += float(c0.sum()) * h + float(c1.sum()) * o
                win1, win2 = e - max(0, 1 - m * e), e - max(0, 2 - m * e)
                r0, r1, r2 = c0 / e, c1 / win1, c2 / win2
                a1, a2 = a1 / win1, a2 / win2
                slow["norm"] = dec * slow["norm"] + 1.0
                slow["a2"] = dec * slow["a2"] + a2
                up2 = (r2 - y) + (a2 - slow["a2"] / slow["norm"])  # delta + hp
                d1 = (up2 @ b.T) * (c1 > 0) * (a1 < 1.0)
                slow["d1"] = dec * slow["d1"] + d1
                slow["d2"] = dec * slow["d2"] + (r2 - y)
                one = torch.ones(n, 1, dtype=x.dtype)
                sd1, sd2 = slow["d1"] / slow["norm"], slow["d2"] / slow["norm"]
                dw2 = -g["lr"] / n * sd2.T @ torch.cat([r1, one], 1)
                dw1 = -g["lr"] / n * sd1.T @ torch.cat([r0, one], 1)
                db = g["lr_b"] / n * xi.T @ up2 - g["lr_b"] * g["alpha"] * b
                w2 += dw2
                w1 += dw1
                b += db
    return events
