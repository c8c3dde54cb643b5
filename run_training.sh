#!/usr/bin/env bash
# End to end: records (if missing) -> train -> evaluate on test.
#
#   ./run_training.sh                                  # synthetic HEp-2 set, configs/cnn.flags
#   ./run_training.sh --mixed_precision=float32        # force a policy (default: auto)
#   CONFIG=configs/smoke.flags ./run_training.sh --epochs=1
#   RECORDS=records/my_set ./run_training.sh --model=resnet50 --image_size=96
#
# Extra arguments are passed to hep2tf.train (they override the flagfile). Each stage
# starts with an "== stage" line and ends with its elapsed seconds (train: and the
# precision policy it resolved), so a log shows where the time went.
# EXPLAIN_CELLS (default 0) is passed to evaluate: attribution maps cost about 0.5 s a
# cell here and 2-3 s a cell on the slowest CPU class, so the default job skips them;
# python -m hep2tf.evaluate --model_dir=runs/cnn makes them (24 cells) afterwards.
set -euo pipefail
cd "$(dirname "$0")"

CONFIG=${CONFIG:-configs/cnn.flags}
RECORDS=${RECORDS:-records/synthetic_hep2}
RUN=${RUN:-runs/$(basename "$CONFIG" .flags)}
PYTHON=${PYTHON:-python}
EXPLAIN_CELLS=${EXPLAIN_CELLS:-0}

stage_start=$SECONDS
done_stage() {  # done_stage NAME [DETAIL]
  echo "== $1 done in $((SECONDS - stage_start)) s${2:+ ($2)}"
  stage_start=$SECONDS
}

if [ ! -f "$RECORDS/hep2tf.json" ]; then
  if [ "$RECORDS" = "records/synthetic_hep2" ]; then
    echo "== records: building the synthetic HEp-2 set into $RECORDS"
    "$PYTHON" -m hep2tf.create_records
    done_stage records
  else
    echo "error: $RECORDS has no records; make them with python -m hep2tf.create_records" >&2
    exit 2
  fi
else
  echo "== records: $RECORDS exists, kept"
fi

echo "== train: $CONFIG -> $RUN"
"$PYTHON" -m hep2tf.train --flagfile="$CONFIG" --records_dir="$RECORDS" \
    --model_dir="$RUN" --overwrite "$@"
policy=$("$PYTHON" -c 'import json, sys
print(json.load(open(sys.argv[1]))["mixed_precision"])' "$RUN/config.json" 2>/dev/null \
    || echo unknown)
done_stage train "mixed_precision=$policy"

echo "== evaluate: $RUN on test"
"$PYTHON" -m hep2tf.evaluate --model_dir="$RUN" --split=test \
    --explain_cells="${EXPLAIN_CELLS:-0}"
done_stage evaluate
