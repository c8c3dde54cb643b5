"""Training: a TrainConfig and a records folder -> a run directory (`trainer`), the
custom loop under every tf.distribute strategy (`loop`, `distribute`), TensorBoard
summaries and sweeps with cross-validation (`sweep`).

Uses hep2tf.data, hep2tf.models and hep2tf.evaluation.
"""
