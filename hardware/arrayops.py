"""The few elementwise functions generated rate code calls, for numpy and torch alike."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def numpy_ops() -> SimpleNamespace:
    return SimpleNamespace(
        exp=np.exp, log=np.log, tanh=np.tanh, sign=np.sign, abs=np.abs, sqrt=np.sqrt,
        step=lambda x: (np.asarray(x) > 0).astype(np.float32),
        maximum=np.maximum, minimum=np.minimum,
        zeros_like=np.zeros_like, matmul=np.matmul,
        affine=lambda r, w: r @ w[:, :-1].T + w[:, -1],
    )


def torch_ops() -> SimpleNamespace:
    import torch

    def _t(x, like=None):
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)

    return SimpleNamespace(
        exp=lambda x: torch.exp(_t(x)), log=lambda x: torch.log(_t(x)),
        tanh=lambda x: torch.tanh(_t(x)), sign=lambda x: torch.sign(_t(x)),
        abs=lambda x: torch.abs(_t(x)), sqrt=lambda x: torch.sqrt(_t(x)),
        step=lambda x: (_t(x) > 0).to(torch.float32),
        maximum=lambda a, b: torch.maximum(_t(a), _t(b).to(_t(a).device)),
        minimum=lambda a, b: torch.minimum(_t(a), _t(b).to(_t(a).device)),
        zeros_like=torch.zeros_like, matmul=torch.matmul,
        affine=lambda r, w: torch.addmm(w[:, -1], r, w[:, :-1].T),
    )
