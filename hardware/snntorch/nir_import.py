"""snntorch's own NIR importer (``import_from_nir``), for files neurolocal writes.

:func:`import_snntorch` applies the metadata NIR cannot carry (reset by subtraction, the
initial membrane) and fixes snntorch's batch-unaware ``Flatten``; :func:`run_imported` runs a
converted graph, :func:`run_imported_spiking` a spiking-trained one (its spike counts, with
the learning targets' one-step synaptic delays reproduced as
:mod:`neurolocal.converters.export` describes). Used to check that snntorch reads our files
the way we run them.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.converters.nir_io import node_metadata, read_graph

__all__ = ["import_snntorch", "run_imported", "run_imported_spiking"]


def import_snntorch(
    graph_or_path: Any,
    *,
    apply_metadata: bool = True,
    batch_flatten: bool = True,
) -> Any:
    """Read a graph with ``snntorch.import_nir.import_from_nir``.

    With ``apply_metadata`` (default) every ``Leaky`` whose node says ``reset="subtract"`` is
    switched from the importer's reset-to-zero back to subtraction with snntorch's default
    delayed reset, which makes the imported network compute exactly what ``run_snntorch``
    computes. ``batch_flatten`` shifts ``Flatten`` dims by one so batches work (the importer
    maps NIR's unbatched ``start_dim=0`` to torch's ``Flatten(0)``, which would merge the batch).
    """
    import torch
    from snntorch.import_nir import import_from_nir

    graph = read_graph(Path(graph_or_path)) if isinstance(graph_or_path, (str, os.PathLike)) \
        else graph_or_path
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress chatter
        net = import_from_nir(graph)
    modules = dict(net.named_modules())
    for name, node in graph.nodes.items():
        mod = modules.get(name.replace(".", "_"))
        if mod is None:
            continue
        meta = node_metadata(node)
        if apply_metadata and meta.get("reset") == "subtract" and hasattr(mod, "beta"):
            mod.reset_mechanism = "subtract"
            mod.state_function = mod._base_sub
            mod.reset_delay = True
        if apply_metadata and float(meta.get("v_init", 0.0)) and hasattr(mod, "beta"):
            # the initial membrane: set on the first call after each reset (run_imported)
            mod._nl_v0 = float(meta["v_init"]) * float(mod.threshold)
            mod._nl_pending = True
            mod.register_forward_pre_hook(_initial_membrane)
        if batch_flatten and isinstance(mod, torch.nn.Flatten):
            mod.start_dim = mod.start_dim + 1 if mod.start_dim >= 0 else mod.start_dim
            mod.end_dim = mod.end_dim + 1 if mod.end_dim >= 0 else mod.end_dim
    return net


def _initial_membrane(module: Any, args: tuple[Any, ...]) -> None:
    if module._nl_pending:
        import torch

        module.mem = torch.full_like(args[0], module._nl_v0)
        module._nl_pending = False


def run_imported(net: Any, x: Any, timesteps: int, *, batched: bool = True) -> np.ndarray:
    """Run an imported snntorch graph for T steps of constant input; return the summed output.

    The output is the sum over steps of the graph's output (read-out current, or spikes for
    graphs that end in a neuron). ``batched=False`` runs one unbatched sample at a time (for
    graphs imported without ``batch_flatten``).
    """
    import torch

    leakies = [m for m in net.modules() if hasattr(m, "reset_mem") and hasattr(m, "mem")]

    def reset() -> None:
        for m in leakies:
            m.mem = torch.zeros(0)
            if hasattr(m, "_nl_pending"):
                m._nl_pending = True

    xt = torch.from_numpy(np.array(x, np.float32))  # a writable copy
    outs = []
    with torch.no_grad():
        chunks = [xt] if batched else [xt[i] for i in range(len(xt))]
        for chunk in chunks:
            reset()
            acc = None
            for _ in range(int(timesteps)):
                out = net(chunk)
                out = out[0] if isinstance(out, tuple) else out
                acc = out.double() if acc is None else acc + out.double()
            outs.append(acc.reshape(acc.shape[0] if batched else 1, -1).numpy())
    return np.concatenate(outs)


def run_imported_spiking(graph_or_path: Any, spikes: np.ndarray) -> np.ndarray:
    """Output spike counts (N, classes) of a spiking-trained graph on input spikes (T, N, n).

    snntorch's importer builds ``Synaptic`` cells with hidden state and no synaptic delay;
    the learning targets delay every projection by one step, so the input is shifted by one
    step and the run is ``T - (L - 1)`` steps long (:func:`neurolocal.converters.export.
    delay_free_steps`), which gives exactly the learning targets' counts.
    """
    import torch

    from neurolocal.converters.export import delay_free_input, delay_free_steps

    graph = read_graph(Path(graph_or_path)) if isinstance(graph_or_path, (str, os.PathLike)) \
        else graph_or_path
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(graph)
    depth = sum(1 for n in graph.nodes.values() if type(n).__name__ == "CubaLIF")
    for m in net.modules():
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    x = torch.as_tensor(delay_free_input(np.asarray(spikes, np.float32)))
    counts = None
    with torch.no_grad():
        for t in range(delay_free_steps(x.shape[0], depth)):
            out = net(x[t])
            out = out[0] if isinstance(out, tuple) else out
            counts = out.double() if counts is None else counts + out.double()
    return counts.numpy()
