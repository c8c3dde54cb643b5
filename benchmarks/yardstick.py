"""How fast this machine is against the slowest CPU class hep2tf is sized for.

A fixed yardstick, kept identical to the project's shared tool (tools/yardstick.py of
the shared folder): the seed's 5-conv CNN (32-64-128-256-512 filters, dense
1024-1024, 78x78x1, batch 64, Adam) trained on in-memory tensors. On the reference
host of the AVX2 class (2-core AMD EPYC, AVX2 only; 2048^2 float32 matmul at
59 GFLOP/s) it ran at 37.4 images/s in float32. ONEDNN_MAX_CPU_ISA=AVX2 on a newer CPU
does not reproduce that speed, so times for that class are projected:

    factor = yardstick images/s here / 37.4
    time on the AVX2 class ~= time measured here x factor

It deliberately does not use hep2tf's model zoo: a yardstick that follows the code
would stop measuring the machine. Do not change it.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

REFERENCE_IMAGES_PER_S = 37.4
REFERENCE_MATMUL_GFLOPS = 59.0


class Standardize(keras.layers.Layer):
  def call(self, images):
    return tf.image.per_image_standardization(images)


def yardstick_model() -> keras.Model:
  l2 = keras.regularizers.L2(2.5e-4)
  x = inputs = keras.Input((78, 78, 1))
  x = Standardize()(x)
  for width, size in zip((32, 64, 128, 256, 512), (5, 3, 3, 3, 3)):
    x = keras.layers.Conv2D(width, size, padding="same", kernel_regularizer=l2)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
  x = keras.layers.Flatten()(x)
  for _ in range(2):
    x = keras.layers.Dense(1024, activation="relu", kernel_regularizer=l2)(x)
    x = keras.layers.Dropout(0.5)(x)
  x = keras.layers.Dense(6, kernel_regularizer=l2)(x)
  outputs = keras.layers.Activation("softmax", dtype="float32")(x)
  return keras.Model(inputs, outputs)


def images_per_second(steps: int = 15, batch: int = 64) -> float:
  model = yardstick_model()
  model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
  x = np.random.default_rng(0).random((batch, 78, 78, 1), dtype=np.float32) * 255
  y = np.arange(batch) % 6
  for _ in range(3):
    model.train_on_batch(x, y)
  start = time.perf_counter()
  for _ in range(steps):
    model.train_on_batch(x, y)
  return batch * steps / (time.perf_counter() - start)


def matmul_gflops(dtype: tf.DType = tf.float32, n: int = 2048,
                  repeats: int = 10) -> float:
  """GFLOP/s of an n x n matmul in `dtype` (the roofline the models are held to)."""
  a = tf.random.normal((n, n), dtype=dtype)
  b = tf.random.normal((n, n), dtype=dtype)
  tf.linalg.matmul(a, b).numpy()
  start = time.perf_counter()
  for _ in range(repeats):
    c = tf.linalg.matmul(a, b)
  c.numpy()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def measure(policy: str = "float32", steps: int = 15) -> dict:
  """{policy, images_per_s, factor, matmul_gflops, matmul_factor} at `policy`;
  the global policy is float32 again afterwards."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    rate = images_per_second(steps)
  finally:
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()
  dtype = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}.get(
      policy, tf.float32)
  gflops = matmul_gflops(dtype)
  return {"policy": policy, "images_per_s": round(rate, 1),
          "factor": round(rate / REFERENCE_IMAGES_PER_S, 3),
          "matmul_gflops": round(gflops, 1),
          "matmul_factor": round(matmul_gflops() / REFERENCE_MATMUL_GFLOPS, 3)}
