"""Lava Processes of the Lava target (:mod:`neurolocal.hardware.lava_target`).

They live in a package of their own because Lava, when it looks for the models of a Process,
imports every module in the Process's package directory: keep this package to
:mod:`.procs` and keep its imports light (numpy and Lava only). Import :mod:`.procs` only
after :func:`neurolocal.hardware.lava_compat.ensure_lava_importable`.
"""
