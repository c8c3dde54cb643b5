"""MCA and per-class recall as streaming Keras metrics, for `model.compile`.

`MeanClassAccuracy` and `ClassRecall` take the argmax of the predicted probabilities
(and of soft labels, as mixup makes them), so they agree with
`metrics.classification_report`; a class with no true examples so far has no recall
and is left out of the mean. They register with Keras under the package "hep2tf".
"""

from __future__ import annotations

import keras
from keras import ops

def _class_ids(y_true, y_pred):
  """Class ids (N,) int32 from one-hot/soft (N, K) or sparse (N,) / (N, 1) labels.

  Decided from the label width at run time, because Keras may retrace the step with
  labels of unknown rank.
  """
  rows = ops.reshape(y_true, (ops.shape(y_pred)[0], -1))
  # Mixup and label smoothing make labels soft; the dominant class is the label.
  dominant = ops.cast(ops.argmax(rows, axis=-1), "int32")
  sparse = ops.cast(rows[:, 0], "int32")
  return ops.where(ops.shape(rows)[-1] > 1, dominant, sparse)


def _weights(sample_weight, like):
  if sample_weight is None:
    return ops.ones_like(like, dtype="float32")
  return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


@keras.saving.register_keras_serializable(package="hep2tf")
class MeanClassAccuracy(keras.metrics.Metric):
  """Streaming MCA: mean recall over the classes seen so far, argmax-based.

  State is a (K, K) confusion matrix (rows = true, columns = predicted). `update_state`
  takes y_true as one-hot or soft labels (N, K), whose argmax is taken, or as sparse ids
  (N,) or (N, 1); y_pred as probabilities (N, K) in any float dtype (cast to float32,
  so it works under a mixed-precision policy). Classes with no true example so far are
  left out of the mean; with no examples at all the result is 0.
  """

  def __init__(self, num_classes: int, name: str = "mca", **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes = int(num_classes)
    self.confusion = self.add_weight(
        shape=(self.num_classes, self.num_classes), initializer="zeros",
        dtype="float32", name="confusion_matrix")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = ops.cast(y_pred, "float32")
    true_ids = _class_ids(y_true, y_pred)
    pred_ids = ops.argmax(y_pred, axis=-1)
    weights = _weights(sample_weight, ops.cast(true_ids, "float32"))
    true_onehot = ops.one_hot(true_ids, self.num_classes, dtype="float32")
    pred_onehot = ops.one_hot(pred_ids, self.num_classes, dtype="float32")
    batch = ops.matmul(ops.transpose(true_onehot * weights[:, None]), pred_onehot)
    self.confusion.assign_add(batch)

  def result(self):
    support = ops.sum(self.confusion, axis=1)
    present = ops.cast(support > 0, "float32")
    recall = ops.divide_no_nan(ops.diagonal(self.confusion), support)
    return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))

  def reset_state(self):
    self.confusion.assign(ops.zeros_like(self.confusion))

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="hep2tf")
class ClassRecall(keras.metrics.Metric):
  """Streaming recall of one class, taking the argmax of the predicted probabilities.

  This is per-class accuracy as the field means it for softmax outputs; Keras's own
  `Recall(class_id=...)` instead thresholds that class's probability at 0.5. Labels and
  predictions are taken as by `MeanClassAccuracy`; the result is 0 until the class has
  been seen.
  """

  def __init__(self, class_id: int, name: str | None = None, **kwargs):
    super().__init__(name=name or f"recall_{class_id}", **kwargs)
    self.class_id = int(class_id)
    self.true_positives = self.add_weight(shape=(), initializer="zeros",
                                          dtype="float32", name="true_positives")
    self.positives = self.add_weight(shape=(), initializer="zeros", dtype="float32",
                                     name="positives")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = ops.cast(y_pred, "float32")
    true_ids = _class_ids(y_true, y_pred)
    pred_ids = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    is_class = ops.cast(ops.equal(true_ids, self.class_id), "float32")
    hit = ops.cast(ops.equal(pred_ids, self.class_id), "float32")
    weights = _weights(sample_weight, is_class)
    self.positives.assign_add(ops.sum(is_class * weights))
    self.true_positives.assign_add(ops.sum(is_class * hit * weights))

  def result(self):
    return ops.divide_no_nan(self.true_positives, self.positives)

  def reset_state(self):
    self.true_positives.assign(0.0)
    self.positives.assign(0.0)

  def get_config(self):
    return {**super().get_config(), "class_id": self.class_id}
