"""Conversion: an example table (hep2tf.data.sources, hep2tf.data.splits) written as a
sharded records folder, locally (`create`, `writer`) or with Apache Beam (`beam`).

Uses hep2tf.data and the base modules only.
"""
