"""hep2tf's experiment config: every option of every command, declared once.

One module per section, each a dataclass whose fields are flags (default, help,
choices; hep2tf/config/core.py):

  data.py      DataConfig: records, splits, folds, reading
  model.py     ModelConfig: the network and its weights
  augment.py   AugmentConfig: augmentation in the training step, mixup / cutmix
  train.py     FitConfig (optimisation, length, execution, distribution), and
               TrainConfig = data + model + augment + train, what a run takes
  convert.py   ConvertConfig (create_records, beam_pipeline), VerifyConfig,
               SynthConfig (synth)
  evaluate.py  EvaluateConfig (evaluate), PredictConfig (predict)
  sweep.py     SweepConfig (sweep)
  run.py       RunConfig: RUN/config.json, written with a version, read back typed
  cli.py       run(main, sections, doc): a command line on sections; --help by
               section

Adding an option is adding one field to its section: the flag, its help, flagfiles,
sweep grids, RUN/flags.txt and RUN/config.json follow. Nothing here imports
TensorFlow.
"""
