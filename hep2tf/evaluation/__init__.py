"""Evaluation: metrics as the field reports them, calibration and abstention,
explanations, plots, the serving export, and evaluate / predict on a run directory.

Uses hep2tf.data and hep2tf.models; never hep2tf.training or hep2tf.convert.
"""
