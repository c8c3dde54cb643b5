"""config.py: the train flags generated from TrainConfig, and back."""

import dataclasses
import os

import pytest
from absl import flags

from hep2tf.training import config as config_lib
from hep2tf.training.config import TrainConfig
from tests.conftest import REPO


def _defined():
  flag_values = flags.FlagValues()
  config_lib.define_flags(flag_values)
  return flag_values


def test_one_flag_per_field_with_its_default_help_and_type():
  flag_values = _defined()
  fields = dataclasses.fields(TrainConfig)
  assert sorted(flag_values) == sorted(f.name for f in fields)
  kinds = {"str": "string", "int": "int", "float": "float", "bool": "bool"}
  for field in fields:
    flag = flag_values[field.name]
    assert flag.default == field.default
    assert flag.help.endswith(field.metadata["help"]) and field.metadata["help"]
    if field.metadata.get("choices"):
      assert flag.flag_type() == "string enum"
      assert flag.parser.enum_values == list(field.metadata["choices"])
      assert field.default in field.metadata["choices"]
    else:
      assert flag.flag_type() == kinds[field.type]


def test_flagfile_round_trip(tmp_path):
  config = TrainConfig(records_dir="/data/rec", learning_rate=0.0125, batch_norm=True,
                       rotation=False, optimizer="sgd", fold_column="",
                       cnn_filters="8,8,8,8,8", mixed_precision="none", tpu="")
  path = tmp_path / "flags.txt"
  path.write_text(config_lib.flagfile_text(config, str(tmp_path / "run")))
  text = path.read_text()
  assert "--batch_norm\n" in text and "--norotation\n" in text
  assert text.rstrip().endswith(f"--model_dir={tmp_path / 'run'}")
  assert "overwrite" not in text
  # --model_dir is not a train-config flag; the reader takes the rest back.
  path.write_text("\n".join(line for line in text.splitlines()
                            if not line.startswith("--model_dir")))
  assert config_lib.config_from_flagfile(str(path)) == config
  assert config_lib.config_from_flagfile(str(path), seed=3).seed == 3


def test_shipped_flagfiles_read_as_train_reads_them():
  config = config_lib.config_from_flagfile(os.path.join(REPO, "configs", "cnn.flags"))
  assert (config.batch_size, config.learning_rate, config.schedule) == (32, 1e-3,
                                                                        "cosine")
  assert config.rotation is True and config.min_steps == 600


def test_flagfile_with_an_unknown_flag_is_refused(tmp_path):
  path = tmp_path / "bad.flags"
  path.write_text("--epochs=2\n--no_such_flag=1\n")
  with pytest.raises(ValueError, match="no_such_flag"):
    config_lib.config_from_flagfile(str(path))


def test_parse_value_as_the_flag_parses_it():
  assert config_lib.parse_value("batch_norm", "false") is False
  assert config_lib.parse_value("batch_size", "16") == 16
  assert config_lib.parse_value("learning_rate", "1e-2") == 0.01
  assert config_lib.parse_value("cache", "auto") == "auto"
  with pytest.raises(ValueError):
    config_lib.parse_value("optimizer", "rmsprop")
  with pytest.raises(ValueError):
    config_lib.parse_value("epochs", "many")
  with pytest.raises(KeyError):
    config_lib.parse_value("model_dir", "x")
