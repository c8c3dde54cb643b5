"""`auto` precision measured on the run's own step (hep2tf/training/precision.py)."""

import json

import keras

from hep2tf import hardware
from hep2tf.config.train import TrainConfig
from hep2tf.training import precision


def _config(records_dir, **overrides):
  fields = dict(model="cnn", cnn_filters="4,4,4,4,4", dense_units=8, batch_size=4)
  return TrainConfig(records_dir=records_dir, **{**fields, **overrides})


def test_the_probe_times_the_models_step_and_restores_the_policy(tiny_records):
  records_dir, _ = tiny_records
  config = _config(records_dir)
  shape, classes = precision._input_of(config)
  before = keras.mixed_precision.global_policy().name
  probe = precision.StepProbe(config, shape, classes, steps=2)
  for policy in ("float32", "mixed_bfloat16", "float32"):
    assert probe(policy) > 0
  assert keras.mixed_precision.global_policy().name == before
  assert sorted(probe._steps) == ["float32", "mixed_bfloat16"]   # built once each
  probe.close()


def test_resolve_probes_only_for_auto_and_keys_the_cache_by_model(
    tiny_records, tmp_path, monkeypatch):
  records_dir, _ = tiny_records
  seen = []

  def resolve_precision(requested, **kwargs):
    seen.append((requested, kwargs.get("probe_key")))
    return "float32", "test"

  monkeypatch.setattr(hardware, "resolve_precision", resolve_precision)
  precision.resolve(_config(records_dir, mixed_precision="float32"))
  precision.resolve(_config(records_dir))
  precision.resolve(_config(records_dir, cnn_filters="8,8,8,8,8"))
  assert seen[0] == ("float32", None)
  keys = [json.loads(key) for _, key in seen[1:]]
  assert keys[0]["input"] == list(precision._input_of(_config(records_dir))[0])
  assert keys[0]["batch"] == 4 and keys[0] != keys[1]


def test_several_workers_decide_from_the_flags(tiny_records, monkeypatch):
  records_dir, _ = tiny_records
  seen = []

  def resolve_precision(requested, **kwargs):
    seen.append(kwargs.get("probe"))
    return "mixed_bfloat16", "auto: flags"

  monkeypatch.setattr(hardware, "resolve_precision", resolve_precision)
  monkeypatch.setenv("TF_CONFIG", json.dumps(
      {"cluster": {"worker": ["localhost:1", "localhost:2"]},
       "task": {"type": "worker", "index": 1}}))
  policy, reason = precision.resolve(_config(records_dir))
  assert seen == [None] and policy == "mixed_bfloat16"
  assert "several workers" in reason
