#!/usr/bin/env bash
# End to end: records (if missing) -> train -> evaluate on test.
#
#   ./run_training.sh                                  # synthetic HEp-2 set, configs/cnn.flags
#   CONFIG=configs/smoke.flags ./run_training.sh --epochs=1
#   RECORDS=records/my_set ./run_training.sh --model=resnet50 --image_size=96
#
# Extra arguments are passed to hep2tf.train (they override the flagfile).
set -euo pipefail
cd "$(dirname "$0")"

CONFIG=${CONFIG:-configs/cnn.flags}
RECORDS=${RECORDS:-records/synthetic_hep2}
RUN=${RUN:-runs/$(basename "$CONFIG" .flags)}
PYTHON=${PYTHON:-python}

if [ ! -f "$RECORDS/hep2tf.json" ]; then
  if [ "$RECORDS" = "records/synthetic_hep2" ]; then
    echo "== records: building the synthetic HEp-2 set into $RECORDS"
    "$PYTHON" -m hep2tf.create_records
  else
    echo "error: $RECORDS has no records; make them with python -m hep2tf.create_records" >&2
    exit 2
  fi
fi

echo "== train: $CONFIG -> $RUN"
"$PYTHON" -m hep2tf.train --flagfile="$CONFIG" --records_dir="$RECORDS" \
    --model_dir="$RUN" --overwrite "$@"

echo "== evaluate: $RUN on test"
"$PYTHON" -m hep2tf.evaluate --model_dir="$RUN" --split=test
