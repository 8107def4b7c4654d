"""HDF5 checkpoints: the network's state, its rule (as text) and how it was trained.

Written atomically (:func:`neurolocal.fileio.atomic_write`), so a crash never leaves a
half-written checkpoint where a good one was. The file's first 512 bytes (an HDF5 user
block, which HDF5 skips) hold a SHA-256 digest of the rest, checked before HDF5 parses a
byte: HDF5's own reader can loop forever on some damaged files. Inside, a checksum of the
arrays and configuration, and every field checked against the rule it holds: a corrupt,
edited or mismatched file is refused with a message naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np

from .errors import CheckpointError, NeurolocalError
from .fileio import atomic_write
from .network import ConvSpec, Network, RecurrentSpec
from .parser import parse_rule
from .rule import FORWARD, RECURRENT

FORMAT = "neurolocal-checkpoint"
VERSION = 3  #: 2 adds the checksum, 3 the sealed header; version 1 files load with a warning
HEADER = 512  #: the HDF5 user block that holds the digest of the rest of the file
SEAL = b"neurolocal-checkpoint sha256:"
_ATTRS = ("rule_name", "rule_text", "globals", "sizes", "convs", "hidden_activation",
          "output_activation", "meta")
#: written only when the network has them (files of networks without stay as they were)
_OPTIONAL = ("recurrent",)


def _attributes(net: Network, meta: dict | None) -> dict:
    return {"rule_name": net.rule.name, "rule_text": net.rule.text,
            "globals": json.dumps(net.rule.scalar_globals(), sort_keys=True),
            "sizes": json.dumps([int(s) for s in net.sizes]),
            "convs": json.dumps({str(k): v.to_dict() for k, v in net.convs.items()},
                                sort_keys=True),
            "hidden_activation": net.hidden_activation,
            "output_activation": net.output_activation,
            "meta": json.dumps(meta or {}, sort_keys=True, default=float),
            **({"recurrent": json.dumps({str(k): v.to_dict() for k, v in net.recurrent.items()},
                                        sort_keys=True)} if net.recurrent else {})}


def checksum(attrs: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the configuration and every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for key in _ATTRS:
        h.update(f"{key}={attrs[key]}\n".encode())
    for key in _OPTIONAL:
        if key in attrs:
            h.update(f"{key}={attrs[key]}\n".encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def _arrays(net: Network) -> dict[str, np.ndarray]:
    return {f"state/{proj}/{layer}/{var}": np.asarray(arr)
            for proj, layers in net.state.items() for layer, d in layers.items()
            for var, arr in d.items()}


def save_checkpoint(path: str | os.PathLike, net: Network, meta: dict | None = None) -> Path:
    """Write ``net`` (state, rule text, globals, shape) and ``meta`` to ``path`` atomically."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise CheckpointError(f"cannot write checkpoint {path}: folder {folder} does not exist")
    attrs, arrays = _attributes(net, meta), _arrays(net)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w", userblock_size=HEADER) as f:
            f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
            for key, value in attrs.items():
                f.attrs[key] = value
            for name, arr in arrays.items():
                f.create_dataset(name, data=arr)
            f.attrs["checksum"] = checksum(attrs, arrays)
        seal(tmp)

    return atomic_write(path, write)


def _digest(fh) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def seal(path: str | os.PathLike) -> None:
    """Write the digest of everything after the header into the header."""
    with open(path, "r+b") as fh:
        fh.seek(HEADER)
        digest = _digest(fh)
        fh.seek(0)
        fh.write((SEAL + digest.encode() + b"\n").ljust(HEADER, b"\0"))


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Does ``path`` hold a neurolocal checkpoint? Sealed files are recognised by their header
    alone (HDF5 never parses a damaged one); older ones by their format attribute."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(SEAL)) == SEAL:
                return True
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def _check_seal(path: Path) -> bool:
    """True if the header holds the digest of the rest; False if there is no header (a file
    of version 1 or 2); a CheckpointError if the bytes changed after they were sealed."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER)
        if not head.startswith(SEAL):
            return False
        stored = head[len(SEAL):len(SEAL) + 64].decode("ascii", "replace")
        if len(head) == HEADER and _digest(fh) == stored:
            return True
    raise CheckpointError(f"checkpoint {path}: checksum mismatch: the file's bytes changed "
                          "after it was written (corrupt, truncated or edited); re-create it "
                          "with `neurolocal train --out`")


def _read(f: h5py.File, path: Path, sealed: bool) -> tuple[dict, dict[str, np.ndarray]]:
    if f.attrs.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is an HDF5 file but not a neurolocal checkpoint (format attribute "
            f"{f.attrs.get('format')!r}); write one with `neurolocal train --out`")
    if not sealed and int(f.attrs.get("version", 1)) >= 3:
        raise CheckpointError(f"checkpoint {path}: its header (the first {HEADER} bytes, which "
                              "hold the file's checksum) is damaged; re-create it with "
                              "`neurolocal train --out`")
    attrs = {k: f.attrs[k] for k in (*_ATTRS, *_OPTIONAL) if k in f.attrs}
    missing = [k for k in _ATTRS if k not in attrs]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing field(s) {', '.join(missing)}")
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    if not isinstance(attrs["sizes"], str):  # version 1 stored an int array
        attrs["sizes"] = json.dumps([int(s) for s in attrs["sizes"]])
    arrays: dict[str, np.ndarray] = {}
    if "state" not in f:
        raise CheckpointError(f"checkpoint {path}: no 'state' group (no weights)")
    f["state"].visititems(lambda name, obj: arrays.__setitem__(f"state/{name}", obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
    stored = f.attrs.get("checksum")
    if stored is None:
        warnings.warn(f"checkpoint {path} has no checksum (written by an older neurolocal); "
                      "its fields are checked, its bytes cannot be", stacklevel=3)
    elif str(stored) != checksum(attrs, arrays):
        raise CheckpointError(
            f"checkpoint {path}: checksum mismatch: its weights or configuration changed after "
            "it was written (a corrupt or edited file); re-create it with `neurolocal train "
            "--out`")
    return attrs, arrays


def _read_file(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The raw fields; whatever h5py raises on damaged bytes becomes a CheckpointError."""
    sealed = _check_seal(path)
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path, sealed)
    except NeurolocalError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, RuntimeError, KeyError...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({exc}); "
                              "re-create it with `neurolocal train --out`") from None


def load_checkpoint(path: str | os.PathLike) -> tuple[Network, dict]:
    """Read a checkpoint back into a :class:`Network` and its metadata (validated)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        attrs, arrays = _read_file(path)
        rule = parse_rule(str(attrs["rule_text"]), source=f"{path}:rule_text")
        rule = rule.with_globals(**json.loads(attrs["globals"]))
        convs = {int(k): ConvSpec(**v) for k, v in json.loads(attrs["convs"]).items()}
        recurrent = _recurrent(attrs.get("recurrent"), path)
        net = Network([int(s) for s in json.loads(attrs["sizes"])], rule,
                      str(attrs["hidden_activation"]), str(attrs["output_activation"]),
                      convs=convs, recurrent=recurrent)
        meta = json.loads(attrs["meta"])
    except NeurolocalError as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({exc}); "
                              "re-create it with `neurolocal train --out`") from None
    if attrs["rule_name"] != rule.name:
        raise CheckpointError(f"checkpoint {path}: field rule_name says {attrs['rule_name']!r} "
                              f"but rule_text defines rule {rule.name!r}")
    _fill_state(net, arrays, path)
    _validate(net, path)
    return net, meta


def _recurrent(text, path: Path) -> dict[int, RecurrentSpec]:
    """The ``recurrent`` field: hidden layer -> its dynamics (absent: no recurrent layer)."""
    if text is None:
        return {}
    raw = json.loads(text)
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise CheckpointError(f"checkpoint {path}: field recurrent must map layers to their "
                              f"dynamics, got {text!r}")
    return {int(k): RecurrentSpec(**v) for k, v in raw.items()}


def _fill_state(net: Network, arrays: dict[str, np.ndarray], path: Path) -> None:
    for name, arr in arrays.items():
        parts = name.split("/")
        if len(parts) != 4 or not parts[2].isdigit():
            raise CheckpointError(f"checkpoint {path}: unexpected field {name}")
        _, proj, layer, var = parts
        net.state.setdefault(proj, {}).setdefault(int(layer), {})[var] = np.asarray(arr)


def _expected_shape(net: Network, proj: str, layer: int) -> tuple[int, int]:
    if proj == FORWARD:
        return net.forward_shape(layer)
    if proj == RECURRENT:
        return net.recurrent_shape(layer)
    fb = net.rule.feedback[proj]
    return net.sizes[layer], net.feedback_source_size(fb, layer)


def _validate(net: Network, path: Path) -> None:
    """Every array the rule needs is there, with its shape, a float dtype and finite values;
    nothing else is."""
    rule = net.rule
    bad = sorted(k for k in net.recurrent if not 1 <= k < net.depth)
    if bad:
        raise CheckpointError(f"checkpoint {path}: field recurrent names layer {bad[0]}, which "
                              f"is not a hidden layer of a {'-'.join(map(str, net.sizes))} "
                              "network")
    if net.recurrent and net.convs:
        raise CheckpointError(f"checkpoint {path}: a network with both convolutions and "
                              "recurrent layers is not one neurolocal builds")
    for proj in (*rule.projections, RECURRENT):
        fb = rule.feedback.get(proj)
        if fb is not None and fb.source.scope == "prev":
            continue  # carried by the forward synapses: no state of its own
        layers = range(1, net.depth + 1) if proj == FORWARD else \
            sorted(net.recurrent) if proj == RECURRENT else range(1, net.depth)
        for layer in layers:
            want = _expected_shape(net, proj, layer)
            for var in rule.state_vars(proj):
                field = f"state/{proj}/{layer}/{var}"
                arr = net.state.get(proj, {}).get(layer, {}).get(var)
                if arr is None:
                    raise CheckpointError(f"checkpoint {path}: field {field} is missing (rule "
                                          f"{rule.name!r} needs it)")
                if arr.dtype.kind != "f":
                    raise CheckpointError(f"checkpoint {path}: field {field} has dtype "
                                          f"{arr.dtype}, expected float32 or float64")
                if arr.shape != want:
                    what = "forward weights of layer" if proj == FORWARD else \
                        "recurrent weights of layer" if proj == RECURRENT else \
                        f"feedback {proj} into layer"
                    raise CheckpointError(f"checkpoint {path}: {what} {layer} have shape "
                                          f"{arr.shape}, expected {want} ({field})")
                if not np.isfinite(arr).all():
                    raise CheckpointError(f"checkpoint {path}: field {field} holds NaN or inf "
                                          "values (a diverged run?)")
    for proj, layers in net.state.items():
        for layer, d in layers.items():
            for var in d:
                if proj == RECURRENT:
                    expected = layer in net.recurrent and var in rule.state_vars(RECURRENT)
                else:
                    expected = proj in rule.projections and var in rule.state_vars(proj) and \
                        1 <= layer <= (net.depth if proj == FORWARD else net.depth - 1)
                if not expected:
                    raise CheckpointError(
                        f"checkpoint {path}: field state/{proj}/{layer}/{var} does not belong "
                        f"to a {'-'.join(map(str, net.sizes))} network trained with rule "
                        f"{rule.name!r} (an extra layer or a rule that disagrees with the "
                        "stored state)")
