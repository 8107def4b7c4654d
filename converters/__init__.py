"""Rate -> spiking conversion, normalisation, Loihi 2 quantisation, NIR import/export.

Shipped as ``neurolocal.converters``. Modules (imported on first use, so ``neurolocal``'s CLI
stays fast):

* :mod:`.model` -- the converter-neutral network description (:class:`SNNModel`) and results
* :mod:`.torch_import` -- ``nn.Sequential`` / state dict / (W, b) pairs -> SNNModel
* :mod:`.normalise` -- data-based max / percentile normalisation
* the simulators are the targets' own runtimes (``neurolocal.hardware.<target>.inference``)
* :mod:`.quantise` -- Loihi 2 fixed-point formats and a bit-exact emulation of Lava fixed_pt
* :mod:`.nir_io` -- NIR files, snntorch's importer, the learning-rule sidecar
* :mod:`.api` -- :func:`convert` and :func:`run_snn`; :mod:`.cli` -- ``neurolocal convert/run``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "convert": "api", "run_snn": "api", "ConversionResult": "api", "load_model": "api",
    "SNNModel": "model", "SNNLayer": "model", "Neuron": "model", "Op": "model",
    "RunResult": "model", "ConversionError": "model", "UnsupportedLayerError": "model",
    "from_sequential": "torch_import", "from_layers": "torch_import",
    "from_network": "torch_import", "load_torch_file": "torch_import",
    "normalise": "normalise", "set_neurons": "normalise",
    "quantise": "quantise", "simulate_fixed": "quantise",
    "read_nir": "nir_io", "write_nir": "nir_io", "from_nir": "nir_io", "to_nir": "nir_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
