"""Every Lava Process and ProcessModel neurolocal adds to Lava's own, in one place.

Lava, when it looks for the models of a Process, imports every module in the Process's
package directory: keep this package to process modules with light imports (numpy, Lava and
:mod:`neurolocal.hardware.profiles`), and import it only after
:func:`neurolocal.hardware.lava.compat.ensure_lava_importable`.
"""
