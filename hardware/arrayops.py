"""The few array functions generated rate code and the rate runtime call, numpy and torch alike.

Besides the elementwise functions: the dense and the convolutional affine map, and the two
reshapes a conv layer's update needs (receptive fields of the pre map, positions of the post
map), so that the one generated update function serves both.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def _np_patches(r, spec):
    """(B, C*H*W) maps -> (B*L, C*k*k) receptive fields, columns ordered (C, kh, kw)."""
    k, s, p = spec.kernel, spec.stride, spec.padding
    x = r.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :spec.out_height, :spec.out_width]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, spec.fan_in)


def _np_positions(v, spec):
    """(B, C*L) flattened output maps -> (B*L, C): one row per (sample, position)."""
    return v.reshape(-1, spec.out_channels, spec.positions).transpose(0, 2, 1) \
        .reshape(-1, spec.out_channels)


def _np_conv_affine(r, w, spec):
    out = _np_patches(r, spec) @ w[:, :-1].T + w[:, -1]
    return out.reshape(-1, spec.positions, spec.out_channels).transpose(0, 2, 1) \
        .reshape(-1, spec.out_size)


def torch_device(device: str):
    """``torch.device(device)``, or a clear error where torch cannot reach it."""
    import torch

    from neurolocal.errors import NeurolocalError

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeurolocalError(f"--device {device}: torch sees no CUDA device here; "
                              "use --device cpu")
    return dev


def _np_conv_outer(post, pre, pre_bias, spec):
    """Sum over samples and positions of post x receptive field, bias column appended."""
    rows = _np_positions(post, spec)
    w = rows.T @ _np_patches(pre, spec)
    return np.concatenate([w, rows.sum(0)[:, None] * pre_bias], 1)


def numpy_ops() -> SimpleNamespace:
    return SimpleNamespace(
        patches=_np_patches, positions=_np_positions, conv_affine=_np_conv_affine,
        conv_outer=_np_conv_outer,
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

    import torch.nn.functional as F

    def patches(r, spec):
        x = r.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
        cols = F.unfold(x, spec.kernel, padding=spec.padding, stride=spec.stride)
        return cols.transpose(1, 2).reshape(-1, spec.fan_in)

    def positions(v, spec):
        return v.reshape(-1, spec.out_channels, spec.positions).transpose(1, 2) \
            .reshape(-1, spec.out_channels)

    def conv_affine(r, w, spec):
        x = r.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
        kernel = w[:, :-1].reshape(spec.out_channels, spec.in_channels, spec.kernel,
                                   spec.kernel)
        return F.conv2d(x, kernel, w[:, -1], stride=spec.stride,
                        padding=spec.padding).flatten(1)

    def conv_outer(post, pre, pre_bias, spec):
        """The kernel gradient convolution (no unfolding), bias column appended."""
        x = pre.reshape(-1, spec.in_channels, spec.in_height, spec.in_width)
        grad = post.reshape(-1, spec.out_channels, spec.out_height, spec.out_width)
        w = torch.nn.grad.conv2d_weight(
            x, (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel), grad,
            stride=spec.stride, padding=spec.padding)
        bias = grad.sum((0, 2, 3)) * pre_bias
        return torch.cat([w.reshape(spec.out_channels, -1), bias[:, None]], 1)

    return SimpleNamespace(
        patches=patches, positions=positions, conv_affine=conv_affine, conv_outer=conv_outer,
        exp=lambda x: torch.exp(_t(x)), log=lambda x: torch.log(_t(x)),
        tanh=lambda x: torch.tanh(_t(x)), sign=lambda x: torch.sign(_t(x)),
        abs=lambda x: torch.abs(_t(x)), sqrt=lambda x: torch.sqrt(_t(x)),
        step=lambda x: (_t(x) > 0).to(torch.float32),
        maximum=lambda a, b: torch.maximum(_t(a), _t(b).to(_t(a).device)),
        minimum=lambda a, b: torch.minimum(_t(a), _t(b).to(_t(a).device)),
        zeros_like=torch.zeros_like, matmul=torch.matmul,
        affine=lambda r, w: torch.addmm(w[:, -1], r, w[:, :-1].T),
    )
