"""The application around the language: CLI, the one training loop, metrics, data, demo.

It may import every target (:mod:`neurolocal.hardware`) and the converters; the language in
:mod:`neurolocal` imports none of them.
"""
