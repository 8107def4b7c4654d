"""DFA through time for a leaky RNN written by hand: the baseline of the generated program.

What an expert writes in torch for Han et al.'s DFA on an RNN with the error at the last step:
the forward loop keeps f(a_t) and the rates, the output error of the last step is sent through
the fixed feedback matrix once, and the weight gradients over the whole sequence are one
matrix product each over the stacked (step, sample) rows -- no per-step traces. The same
network state (bias as the last column of W, R without one) and the same Adam as the generated
program; ``tests/test_recurrent.py`` checks that both end with the same weights.
"""

from __future__ import annotations


class HandwrittenDfaRnn:
    """n_in -> H (recurrent, tanh, ``leak``) -> classes (softmax), DFA through time."""

    def __init__(self, w_in, rec, w_out, fb, *, leak: float, lr_rule: float, adam_lr: float):
        import torch

        self.w_in, self.rec, self.w_out, self.fb = w_in, rec, w_out, fb
        self.leak, self.lr_rule = float(leak), float(lr_rule)
        self.opt = torch.optim.Adam([w_in, rec, w_out], lr=adam_lr, foreach=True)

    def forward(self, x):
        """x (n, T, F) -> rates (T, n, H), f(a) (T, n, H), inputs (T, n, F)."""
        import torch

        xs = x.transpose(0, 1)
        steps, n, features = xs.shape
        hidden = self.rec.shape[0]
        # one product over the stacked (step, sample) rows, the bias riding in addmm
        drive = torch.addmm(self.w_in[:, -1], xs.reshape(steps * n, features),
                            self.w_in[:, :-1].T).view(steps, n, hidden)
        rates = torch.empty_like(drive)
        fs = torch.empty_like(drive)
        r = drive.new_zeros(n, hidden)
        rec_t = self.rec.T
        for t in range(steps):
            torch.tanh(torch.addmm(drive[t], r, rec_t), out=fs[t])
            r = torch.lerp(fs[t], r, self.leak, out=rates[t])
        return rates, fs, xs

    def step(self, x, onehot) -> None:
        import torch

        with torch.no_grad():
            rates, fs, xs = self.forward(x)
            steps, n, hidden = rates.shape
            one = rates.new_ones(n, 1)
            last = torch.cat([rates[-1], one], 1)
            out = torch.softmax(last @ self.w_out.T, 1)
            err = out - onehot                                  # the last step's error
            delta = (1 - fs * fs) * (err @ self.fb.T)           # (T, n, H): B e_T at every step
            rows = delta.reshape(steps * n, hidden)
            pre_in = torch.cat([xs, xs.new_ones(steps, n, 1)], 2).reshape(steps * n, -1)
            before = torch.cat([rates.new_zeros(1, n, hidden), rates[:-1]], 0)
            scale = self.lr_rule / n                            # descent = -increment
            self.w_in.grad = scale * rows.T @ pre_in
            self.rec.grad = scale * rows.T @ before.reshape(steps * n, hidden)
            self.w_out.grad = scale * err.T @ last
            self.opt.step()

    def learn(self, x, onehot, batch: int) -> None:
        for i in range(0, len(x), batch):
            self.step(x[i:i + batch], onehot[i:i + batch])

    def predict(self, x):
        import torch

        with torch.no_grad():
            rates, _, _ = self.forward(x)
            last = torch.cat([rates[-1], rates.new_ones(rates.shape[1], 1)], 1)
            return last @ self.w_out.T
