#!/usr/bin/env bash
# Run a tflottery experiment on an existing Cloud TPU VM.
#
# Usage: launch/tpu_vm.sh TPU_NAME ZONE GS_ROOT_DIR GIN_FILE [more main.py flags...]
# e.g.   launch/tpu_vm.sh my-v3-8 europe-west4-a gs://my-bucket/runs resnet20_cifar10.gin \
#            --gin_bindings="DatasetHparams.data_dir='gs://my-bucket/tfds'"
#
# It copies this checkout to the VM, installs it, and starts the run in a
# tmux session so it survives the ssh connection.  Re-running it after a
# preemption resumes the run (the run directory is on GCS).
set -euo pipefail
if [ "$#" -lt 4 ]; then
  sed -n '2,11p' "$0"; exit 2
fi
TPU="$1"; ZONE="$2"; ROOT="$3"; GIN="$4"; shift 4
HERE="$(cd "$(dirname "$0")/.." && pwd)"
gcloud compute tpus tpu-vm scp --zone="$ZONE" --recurse "$HERE" "$TPU":~/tflottery-src
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --command="
  set -e
  pip install -q -e ~/tflottery-src
  tmux new-session -d -s tflottery \
    'cd ~/tflottery-src && python -m tflottery.main --tpu=local --root_dir=$ROOT --gin_file=$GIN $* 2>&1 | tee -a ~/tflottery.log'
"
echo "started; follow with: gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --command='tail -f ~/tflottery.log'"
