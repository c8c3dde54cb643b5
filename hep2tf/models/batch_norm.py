"""Batch normalisation that trains with one fused kernel.

Keras 3's `BatchNormalization` computes a training batch's statistics with separate
ops (mean, squared difference, mean again, then scale and shift) and so does its
gradient: on a CPU the default CNN spent about a third of its training step in those
element-wise ops, more than in its convolutions' backward pass
(`python -m benchmarks.step_profile`). TensorFlow's `FusedBatchNormV3` (oneDNN's
batch norm on a CPU, cuDNN's on a GPU) does the forward pass and its gradient in one
kernel each.

`BatchNorm` is Keras's layer with that kernel in training mode. Everything else is
Keras's own: the weights (gamma, beta, moving_mean, moving_variance) and their
names, the config, and inference, which normalises with the moving statistics
exactly as before, so a model saved with either layer gives the same predictions.
The moving variance is updated with the batch's unbiased variance (n / (n - 1) of
the biased one that normalises the batch), as the fused kernel reports it; Keras's
own layer uses the biased one. With n = batch x height x width values per channel
(tens of thousands) the two differ in the fifth significant digit.

The fused kernel needs a 4-D channels-last input, no mask, and none of Keras's
extras (renormalisation, synchronised statistics across replicas); a layer asked for
any of those trains through Keras's ops.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# The input dtypes FusedBatchNormV3 takes (its statistics are float32 throughout).
_FUSED_DTYPES = (tf.float32, tf.bfloat16, tf.float16)


@keras.saving.register_keras_serializable(package="hep2tf")
class BatchNorm(keras.layers.BatchNormalization):
  """`keras.layers.BatchNormalization` whose training step is one fused kernel."""

  def _fusable(self, inputs, mask) -> bool:
    return (mask is None and len(inputs.shape) == 4
            and self.axis in (-1, 3) and not self.renorm and not self.synchronized
            and tf.as_dtype(inputs.dtype) in _FUSED_DTYPES)

  def call(self, inputs, training=None, mask=None):
    if not training or not self.trainable or not self._fusable(inputs, mask):
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    scale = (tf.cast(self.gamma, tf.float32) if self.scale
             else tf.ones([channels], tf.float32))
    offset = (tf.cast(self.beta, tf.float32) if self.center
              else tf.zeros([channels], tf.float32))
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, scale, offset, epsilon=self.epsilon, is_training=True,
        data_format="NHWC")
    keep = tf.cast(self.momentum, tf.float32)
    for moving, batch in ((self.moving_mean, mean),
                          (self.moving_variance, variance)):
      moving.assign(tf.cast(moving, tf.float32) * keep + batch * (1.0 - keep))
    return tf.cast(outputs, self.compute_dtype)
