"""HDF5 checkpoints: the network's state, its rule (as text) and run metadata.

Written atomically (temporary file in the same folder, then ``os.replace``), so a
crash never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from .errors import CheckpointError, NeurolocalError
from .network import ConvSpec, Network
from .parser import parse_rule

FORMAT = "neurolocal-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, net: Network, meta: dict | None = None) -> Path:
    """Write ``net`` (state, rule text, globals, shape) to ``path`` atomically."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["rule_name"] = net.rule.name
            f.attrs["rule_text"] = net.rule.text
            f.attrs["globals"] = json.dumps(net.rule.scalar_globals())
            f.attrs["sizes"] = np.asarray(net.sizes, dtype=np.int64)
            f.attrs["convs"] = json.dumps({str(k): v.to_dict() for k, v in net.convs.items()})
            f.attrs["hidden_activation"] = net.hidden_activation
            f.attrs["output_activation"] = net.output_activation
            f.attrs["meta"] = json.dumps(meta or {})
            for proj, layers in net.state.items():
                for layer, d in layers.items():
                    for var, arr in d.items():
                        f.create_dataset(f"state/{proj}/{layer}/{var}", data=arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[Network, dict]:
    """Read a checkpoint back into a :class:`Network` and its metadata."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} is an HDF5 file but not a neurolocal checkpoint (format attribute "
                    f"{f.attrs.get('format')!r}); write one with `neurolocal train --out`")
            rule = parse_rule(str(f.attrs["rule_text"]), source=f"{path}:rule_text")
            rule = rule.with_globals(**json.loads(f.attrs["globals"]))
            convs = {int(k): ConvSpec(**v)
                     for k, v in json.loads(f.attrs.get("convs", "{}")).items()}
            net = Network([int(s) for s in f.attrs["sizes"]], rule,
                          str(f.attrs["hidden_activation"]), str(f.attrs["output_activation"]),
                          convs=convs)
            for proj in f["state"]:
                net.state[proj] = {}
                for layer in f["state"][proj]:
                    net.state[proj][int(layer)] = {
                        var: np.asarray(ds[()]) for var, ds in f["state"][proj][layer].items()}
            meta = json.loads(f.attrs["meta"])
    except NeurolocalError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({exc}); "
                              "re-create it with `neurolocal train --out`") from None
    _validate(net, path)
    return net, meta


def _validate(net: Network, path: Path) -> None:
    from .rule import FORWARD
    for layer in range(1, net.depth + 1):
        w = net.state.get(FORWARD, {}).get(layer, {}).get("w")
        want = net.forward_shape(layer)
        if w is None or w.shape != want:
            raise CheckpointError(f"checkpoint {path}: forward weights of layer {layer} have "
                                  f"shape {None if w is None else w.shape}, expected {want}")
