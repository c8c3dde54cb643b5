"""Data: source layouts, the record schema, the records folder and the tf.data reader.

Nothing here imports training, evaluation, conversion or the command lines; this
package imports no module at import time, so `hep2tf.data.images` and
`hep2tf.data.synth` stay free of TensorFlow in worker processes.
"""
