"""Benchmarks of hep2tf against what a user would otherwise write.

  python -m benchmarks.run            # full run, synthetic 13,596-cell set (< 20 min)
  python -m benchmarks.run --quick    # the same sections at toy size (< 3 min)

Sections (one module each): `converter` (records per second, peak memory), `reader`
(tf.data throughput), `training` (Keras fit throughput, XLA, mixed precision) and
`time_to_accuracy` (the CNN config against the keras-io recipe, `recipe`). `data`
prepares the shared inputs; `common` holds the figure type, the machine description
and the table. Results go to benchmarks/results.json; see benchmarks/README.md.
"""
