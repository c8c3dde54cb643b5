"""tf.distribute strategies for training: one device, several, several machines, TPU.

`--distribution`:
  default       the default strategy (one device: the GPU if there is one, else CPU)
  mirrored      MirroredStrategy: every local GPU (or logical CPU device)
  multi_worker  MultiWorkerMirroredStrategy: the cluster in TF_CONFIG, as TensorFlow
                defines it ({"cluster": {"worker": [...]}, "task": {"type": "worker",
                "index": i}}); worker 0 is the chief
  tpu           TPUStrategy on the TPU named by --tpu (or the one attached)

The batch size is global: each replica gets batch_size / replicas examples per step.
The learning rate is for that global batch; when you change the number of replicas and
scale the batch with it, scale the learning rate linearly (with warm-up).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from hep2tf.config.train import STRATEGIES


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into logical devices so MirroredStrategy can be run without GPUs.

  Must run before TensorFlow initialises its devices (before any op runs).
  """
  if num_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """The strategy called `name` (see the module docstring)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in
                                        tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--distribution=multi_worker needs TF_CONFIG describing the "
                       "cluster and this task")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"unknown distribution {name!r}: expected one of {STRATEGIES}")


def task_id() -> tuple[str, int]:
  """(task type, index) of this process in TF_CONFIG; ("worker", 0) without one."""
  config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
  task = config.get("task", {})
  return task.get("type", "worker"), int(task.get("index", 0))


def is_chief_task() -> bool:
  """Whether TF_CONFIG makes this process the chief: the `chief` task, or worker 0
  when the cluster has none (also true without TF_CONFIG)."""
  task_type, index = task_id()
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
  if "chief" in cluster:
    return task_type == "chief"
  return task_type == "worker" and index == 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run directory (checkpoints, summaries, exports)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  return is_chief_task()


def num_workers() -> int:
  """Workers in TF_CONFIG's cluster (chief included); 1 without one."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
  return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def shard_by_file(dataset: tf.data.Dataset, num_files: int) -> tf.data.Dataset:
  """Each worker reads its own shard files; a split with fewer files than workers is
  sharded by example instead (every worker reads all files and keeps its share)."""
  policy = (tf.data.experimental.AutoShardPolicy.FILE if num_files >= num_workers()
            else tf.data.experimental.AutoShardPolicy.DATA)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = policy
  return dataset.with_options(options)


def visible_gpus() -> list[str]:
  """Indices of the visible GPUs, as CUDA_VISIBLE_DEVICES would name them."""
  gpus = tf.config.list_physical_devices("GPU")
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  names = [d.strip() for d in visible.split(",")] if visible else []
  if len(names) >= len(gpus):
    return names[:len(gpus)]
  return [str(i) for i in range(len(gpus))]
