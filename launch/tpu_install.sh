#!/usr/bin/env bash
# Install this checkout of tflottery on every worker of a Cloud TPU VM.
#
# Usage: launch/tpu_install.sh --name=NAME --zone=ZONE [--project=PROJECT] [--dry-run]
#
# Packs the checkout (without .git, runs/, virtual environments), copies it to
# ~/tflottery-src on all workers (--worker=all: on a pod slice the job runs on
# worker 0, but every host gets the same code) and pip-installs it there,
# keeping the TPU image's own TensorFlow: tf-keras is pinned to its version,
# and the install fails loudly if pip replaced TensorFlow.  Refuses to touch a
# worker while a tflottery job runs there (its code is installed in place).
#
# e.g.   launch/tpu_install.sh --name=lth-v3 --zone=europe-west4-a
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_name="" OPT_zone="" OPT_project=""
parse_args "name zone project" "" "$@"
no_rest
require name zone
check_tpu_name "$OPT_name"
check_zone "$OPT_zone"
tpu_scope "$OPT_zone" "$OPT_project"

archive="${TMPDIR:-/tmp}/tflottery-src-$OPT_name.tar.gz"
# Run on each worker by its login shell (bash on TPU VM images), as one line;
# the $ expressions are the remote shell's, hence the single quotes.
# shellcheck disable=SC2016
steps=(
  'set -e'
  'if tmux ls -F "#{session_name}" 2>/dev/null | grep -q "^tflottery-"; then echo "error: a tflottery job is running on $(hostname); wait for it to finish first" >&2; exit 1; fi'
  'rm -rf ~/tflottery-src'
  'mkdir -p ~/tflottery-src'
  'tar -xzf ~/tflottery-src.tar.gz -C ~/tflottery-src'
  'TFV=$(python3 -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null) || { echo "error: no TensorFlow on $(hostname); create the TPU with a tpu-vm-tf-* --version" >&2; exit 1; }'
  'python3 -m pip install -q "tf-keras~=${TFV%.*}.0" -e ~/tflottery-src'
  'NOW=$(python3 -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null)'
  'if [ "$NOW" != "$TFV" ]; then echo "error: pip replaced TensorFlow $TFV by $NOW on $(hostname); use a TPU VM image with TensorFlow >= 2.16" >&2; exit 1; fi'
  'echo "tflottery installed on $(hostname) (TensorFlow $TFV)"'
)
printf -v remote '%s; ' "${steps[@]}"
remote="${remote%; }"

announce_dry_run
say "Packing $REPO_DIR into $archive"
run tar -czf "$archive" --exclude=.git --exclude=./runs --exclude=./.venv --exclude=./venv \
  --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -C "$REPO_DIR" .
say "Copying it to every worker of $OPT_name"
run gcloud compute tpus tpu-vm scp "$archive" "$OPT_name:tflottery-src.tar.gz" "${SCOPE[@]}" --worker=all
say "Installing it on every worker of $OPT_name"
run gcloud compute tpus tpu-vm ssh "$OPT_name" "${SCOPE[@]}" --worker=all --command="$remote"
run rm -f "$archive"
say "Next: launch/tpu_run.sh --name=$OPT_name --zone=$OPT_zone --root_dir=gs://BUCKET/runs -- --gin_file=..."
