"""hep2tf.config: every command's flags generated from one typed config, and back.

Flags (defaults, help, types, choices) from the section dataclasses; flagfiles,
including flagfiles that include flagfiles; every shipped flagfile parses as train
parses it; --help lists the flags by section; RUN/config.json is written with a
version and read back typed, also as runs of 5ad9eb9 wrote it.
"""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from hep2tf import beam_pipeline, create_records, evaluate, predict, sweep, synth, train
from hep2tf.config import cli, core
from hep2tf.config import train as config_lib
from hep2tf.config.convert import ConvertConfig
from hep2tf.config.run import VERSION, RunConfig
from hep2tf.config.train import TrainConfig
from hep2tf.data.intensity import PixelSpec
from hep2tf.errors import InputError
from tests.conftest import REPO

COMMANDS = {"create_records": create_records, "beam_pipeline": beam_pipeline,
            "train": train, "evaluate": evaluate, "predict": predict,
            "sweep": sweep, "synth": synth}
OLD_CONFIG = os.path.join(REPO, "tests", "data", "config_5ad9eb9.json")
FLAGFILES = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.flags"),
                             recursive=True))
MAX_HEADER_LINES = 12


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_of_every_command_is_a_config_field(name):
  """One flag per flag field of the command's sections, with its default, help and
  type; enum fields are enum flags of their choices."""
  module = COMMANDS[name]
  flag_values = core.own_flag_values(*module.SECTIONS)
  declared = [f for s in module.SECTIONS for f in core.flag_fields(s)]
  retired = {name for s in module.SECTIONS for name in core.retired(s)}
  assert sorted(flag_values) == sorted({f.name for f in declared} | retired)
  for field in declared:
    flag = flag_values[field.name]
    assert field.metadata["help"] and flag.help.endswith(field.metadata["help"]) or (
        field.metadata["help"] in flag.help)
    default = list(field.default) if isinstance(flag, flags.MultiFlag) else (
        field.default)
    assert flag.default == default, field.name
    if field.metadata.get("choices"):
      assert flag.flag_type() == "string enum"
      assert flag.parser.enum_values == list(field.metadata["choices"])
      assert field.default in field.metadata["choices"]


def test_no_command_line_defines_flags_by_hand():
  for name in COMMANDS:
    with open(os.path.join(REPO, "hep2tf", f"{name}.py")) as f:
      assert "flags.DEFINE" not in f.read(), name


def test_help_lists_the_flags_by_section():
  flag_values = core.own_flag_values(*train.SECTIONS)
  text = cli.help_text(train.SECTIONS, train.__doc__, flag_values)
  assert text.startswith("Trains a model on converted records.")
  order = [text.index(f"\nhep2tf.config.{section}:")
           for section in ("data", "model", "augment", "train")]
  assert order == sorted(order)
  # Each flag sits under its own section's heading.
  for name, section in (("records_dir", "data"), ("dropout", "model"),
                        ("defocus", "augment"), ("learning_rate", "train"),
                        ("model_dir", "train")):
    heading = text.rindex("\nhep2tf.config.", 0, text.index(f"  --{name}:"))
    assert text[heading:].startswith(f"\nhep2tf.config.{section}:"), name
  assert "--flagfile" in text


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
  assert config_lib.config_from_flagfile(str(path)) == config
  assert config_lib.config_from_flagfile(str(path), seed=3).seed == 3


def test_convert_config_round_trips_through_its_flags(tmp_path):
  config = ConvertConfig("csv", "/data", csv_path="cells.csv", image_size=(96, 128),
                         layout_option=("class_names=a,b", "channels=1"),
                         rescale_percentiles=(0.5, 99.0), intensity="rescale",
                         num_workers=2, progress=False)
  path = tmp_path / "convert.flags"
  path.write_text("\n".join(core.flag_lines(config)) + "\n")
  assert core.read_flagfile(ConvertConfig, str(path), progress=False) == config
  assert config.source_options["csv_path"] == "cells.csv"
  assert config.source_options["class_names"] == "a,b"
  with pytest.raises(InputError, match="KEY=VALUE"):
    ConvertConfig(layout_option=("nope",)).source_options
  with pytest.raises(InputError, match="given twice"):
    ConvertConfig(csv_path="a.csv", layout_option=("csv_path=b.csv",)).source_options


def test_typed_flags_parse_and_refuse_as_their_fields_say():
  assert core.parse_value(ConvertConfig, "image_size", "96") == (96, 96)
  assert core.parse_value(ConvertConfig, "image_size", "96,128") == (96, 128)
  assert core.parse_value(ConvertConfig, "rescale_percentiles", "1,99.8") == (
      1.0, 99.8)
  for name, bad in (("image_size", "big"), ("rescale_percentiles", "99,1"),
                    ("rescale_percentiles", "1")):
    with pytest.raises(ValueError):
      core.parse_value(ConvertConfig, name, bad)
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


def test_a_flagfile_includes_a_flagfile_and_the_later_line_wins(tmp_path):
  base = tmp_path / "base.flags"
  base.write_text("# the base\n--epochs=4\n--batch_size=32\n--learning_rate=1e-3\n")
  seed = tmp_path / "seed1.flags"
  seed.write_text(f"# base, another seed\n--flagfile={base}\n--seed=1\n--epochs=6\n")
  config = config_lib.config_from_flagfile(str(seed))
  assert (config.seed, config.epochs, config.batch_size) == (1, 6, 32)
  # Three levels, and the command line (an override) last.
  top = tmp_path / "top.flags"
  top.write_text(f"--flagfile={seed}\n--dropout=0.3\n")
  config = config_lib.config_from_flagfile(str(top), batch_size=8)
  assert (config.seed, config.dropout, config.batch_size) == (1, 0.3, 8)


def test_flagfile_with_an_unknown_flag_is_refused(tmp_path):
  path = tmp_path / "bad.flags"
  path.write_text("--epochs=2\n--no_such_flag=1\n")
  with pytest.raises(ValueError, match="no_such_flag"):
    config_lib.config_from_flagfile(str(path))


def _header(path) -> list[str]:
  lines = []
  with open(path) as f:
    for line in f:
      if not line.startswith("#"):
        break
      lines.append(line)
  return lines


def test_every_shipped_flagfile_parses_as_train_parses_it():
  assert len(FLAGFILES) >= 4
  for path in FLAGFILES:
    config = config_lib.config_from_flagfile(path)
    header = _header(path)
    name = os.path.relpath(path, REPO)
    assert header and len(header) <= MAX_HEADER_LINES, (name, len(header))
    assert any("python -m hep2tf." in line or "run_training.sh" in line
               for line in header), f"{name}: the header says how to run it"
    if config.weights == "imagenet":
      # It parses here, offline; its header says the weights are downloaded.
      assert any("download" in line.lower() for line in header), name
  cnn = config_lib.config_from_flagfile(os.path.join(REPO, "configs", "cnn.flags"))
  assert (cnn.batch_size, cnn.learning_rate, cnn.schedule) == (32, 1e-3, "cosine")
  assert cnn.rotation is True and cnn.min_steps == 600


SEEDS = ("alexnet_icpr2014", "cnn_cnmc", "resnet18_tumour", "resnet50_tumour",
         "convnext_b_icpr2012", "coatnet_icpr2012")


def test_every_seed_study_has_its_flagfile_and_its_header_says_what_it_needs():
  names = {os.path.relpath(p, os.path.join(REPO, "configs")) for p in FLAGFILES}
  assert {f"seeds/{name}.flags" for name in SEEDS} <= names
  for name in SEEDS:
    path = os.path.join(REPO, "configs", "seeds", f"{name}.flags")
    text = "".join(_header(path))
    words = " ".join(text.replace("#", " ").replace("-", " ").split())
    assert f"--flagfile=configs/seeds/{name}.flags" in text, name
    assert "study:" in text and "Reported:" in text, name   # setting, figure
    # Fine-tuned from ImageNet where Keras has the weights; else it says it trains
    # from scratch.
    if config_lib.config_from_flagfile(path).weights == "imagenet":
      assert "Needs ImageNet weights" in words and "weights=none" in words, name
    assert "from scratch" in words, name


@pytest.mark.parametrize("path", FLAGFILES, ids=lambda p: os.path.basename(p))
def test_every_shipped_flagfile_builds_its_model_on_a_tiny_input(path):
  from hep2tf.training import build  # TensorFlow: only here
  config = config_lib.config_from_flagfile(path)
  if config.weights == "imagenet":   # not downloaded in a test
    config = dataclasses.replace(config, weights="none")
  grey = "icpr2014" in config.records_dir or "synthetic" in config.records_dir
  shape = (48, 48, 1 if grey else 3)
  train_model, model, _ = build.build_models(config, shape, 6)
  images = np.random.default_rng(0).uniform(0, 60, (2,) + shape).astype("float32")
  probs = np.asarray(train_model(images, training=True))   # the augmenter runs
  assert probs.shape == (2, 6) and np.all(np.isfinite(probs))
  np.testing.assert_allclose(np.asarray(model(images)).sum(axis=1), 1.0, atol=1e-4)
  build.make_optimizer(config, steps_per_epoch=10)


def test_config_json_round_trip_and_unknown_keys_are_named():
  run = RunConfig(train=TrainConfig(records_dir="/r", dropout=0.25),
                  input_shape=(64, 64, 1), class_names=("a", "b"), records_dir="/r",
                  pixels=PixelSpec(dtype="uint16", deep=True, white_level=4095),
                  image_size=(64, 64), mixed_precision="float32")
  raw = json.loads(json.dumps(run.to_json()))
  assert raw["version"] == VERSION
  assert set(raw["config"]) == {"data", "model", "augment", "train"}
  assert raw["config"]["model"]["dropout"] == 0.25
  assert RunConfig.from_json(raw, "config.json") == run
  bad = dict(raw, colour="blue")
  with pytest.raises(InputError, match="colour") as caught:
    RunConfig.from_json(bad, "RUN/config.json")
  assert "RUN/config.json" in str(caught.value)
  bad = json.loads(json.dumps(raw))
  bad["config"]["model"]["dropuot"] = 0.1
  with pytest.raises(InputError, match="dropuot"):
    RunConfig.from_json(bad, "RUN/config.json")
  bad = json.loads(json.dumps(raw))
  bad["config"]["train"]["epochs"] = "ten"
  with pytest.raises(InputError, match="epochs"):
    RunConfig.from_json(bad, "RUN/config.json")
  with pytest.raises(InputError, match="version"):
    RunConfig.from_json(dict(raw, version=VERSION + 1), "RUN/config.json")


def test_config_json_of_5ad9eb9_reads_typed():
  with open(OLD_CONFIG) as f:
    raw = json.load(f)
  assert "version" not in raw
  run = RunConfig.from_json(raw, OLD_CONFIG)
  assert run.model == "cnn" and run.input_shape == (78, 78, 1)
  assert run.class_names[0] == "Homogeneous" and run.image_size is None
  assert run.pixels == PixelSpec(source_kinds=("uint8",))
  assert run.train.epochs == 2 and run.train.eval_split == "validation"
  # All its keys are read, but training_loop, retired (one loop now), is dropped.
  assert raw["config"]["training_loop"] == "auto"
  kept = {k: v for k, v in raw["config"].items() if k != "training_loop"}
  assert dataclasses.asdict(run.train) == {**dataclasses.asdict(TrainConfig()),
                                           **kept}
  # Its flat config with a key no TrainConfig has: named, not a traceback.
  raw["config"]["colour"] = "blue"
  with pytest.raises(InputError, match="colour"):
    RunConfig.from_json(raw, OLD_CONFIG)


def test_the_retired_training_loop_reads_in_old_files_and_fit_is_refused(tmp_path):
  """--training_loop (gone: one loop under every strategy) in a flagfile, as every
  RUN/flags.txt of an earlier run has it: auto and custom read and are ignored, fit
  is refused naming what happened; a config.json as main wrote it (version 2, by
  section) still reads."""
  old = tmp_path / "flags.txt"
  old.write_text("--epochs=3\n--training_loop=auto\n")
  assert config_lib.config_from_flagfile(str(old)) == TrainConfig(epochs=3)
  assert not hasattr(TrainConfig(), "training_loop")
  fit = tmp_path / "fit.flags"
  fit.write_text("--training_loop=fit\n")
  with pytest.raises(ValueError, match="training_loop=fit.*Keras fit"):
    config_lib.config_from_flagfile(str(fit))
  text = config_lib.flagfile_text(TrainConfig(), str(tmp_path / "run"))
  assert "--training_loop" not in text and "--log_every=50" in text
  run = RunConfig(train=TrainConfig(records_dir="/r"), input_shape=(8, 8, 1),
                  class_names=("a", "b"), records_dir="/r")
  raw = json.loads(json.dumps(run.to_json()))
  raw["config"]["train"]["training_loop"] = "fit"
  assert RunConfig.from_json(raw, "RUN/config.json") == run
  # On the command line: absl's one-line error, exit status 1, no traceback.
  out = subprocess.run([sys.executable, "-m", "hep2tf.train", f"--flagfile={fit}",
                        f"--model_dir={tmp_path / 'run'}"], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert "--training_loop=fit" in out.stderr and "Keras fit" in out.stderr


def test_the_config_package_imports_no_tensorflow():
  code = ("import sys; import hep2tf.config.run, hep2tf.config.convert, "
          "hep2tf.config.cli, hep2tf.config.evaluate, hep2tf.config.sweep; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'keras')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env=dict(os.environ, PYTHONPATH=REPO))
  assert out.stdout.strip() == "[]"


def test_a_command_line_prints_its_help_by_section():
  """`--help` through absl's app.run (synth imports no TensorFlow, so this is
  quick): the docstring, then the section's flags, exit status 0."""
  out = subprocess.run([sys.executable, "-m", "hep2tf.synth", "--help"],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=REPO))
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("Draws the synthetic HEp-2 set")
  assert "\nhep2tf.config.convert:\n" in out.stdout
  assert "  --num_images:" in out.stdout and "--flagfile" in out.stdout


def test_a_field_outside_every_section_is_refused():
  @dataclasses.dataclass
  class Joined(TrainConfig):
    stray: int = core.flag(1, "Declared on the joined class, not in a section.")

  with pytest.raises(TypeError, match="stray"):
    core.own_flag_values(Joined)
