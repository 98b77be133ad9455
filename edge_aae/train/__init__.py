"""The workstation side: training config, the AAE model, the training loop, the detector, presets.

Importing this package imports nothing heavy; :mod:`edge_aae.train.model`,
:mod:`edge_aae.train.loop` and :mod:`edge_aae.train.detector` need torch (the
``[train]`` extra). :mod:`edge_aae.train.synth` is numpy only.
"""
