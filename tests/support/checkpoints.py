"""Editing checkpoints as a buggy tool would: change a field, then sign the file again.

A plain edit is caught by the checksum; a re-signed one must still be caught by the field
checks. ``resign`` recomputes the checksum and the sealed header with the project's own
functions.
"""

from __future__ import annotations

import h5py

from neurolocal.checkpoint import _ATTRS, checksum, seal


def resign(path) -> None:
    with h5py.File(path, "a") as f:
        attrs = {k: f.attrs[k] for k in _ATTRS}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        arrays = {}
        f["state"].visititems(lambda name, obj: arrays.__setitem__(f"state/{name}", obj[()])
                              if isinstance(obj, h5py.Dataset) else None)
        f.attrs["checksum"] = checksum(attrs, arrays)
    seal(path)  # and the header's digest of the whole file
