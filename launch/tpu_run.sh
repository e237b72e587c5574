#!/usr/bin/env bash
# Start a tflottery experiment on a Cloud TPU VM, inside tmux so that it
# survives the ssh connection.
#
# Usage: launch/tpu_run.sh --name=NAME --zone=ZONE --root_dir=gs://BUCKET/PATH
#            [--project=PROJECT] [--pod] [--job=ID] [--wait] [--dry-run] -- MAIN_FLAGS...
#
#   MAIN_FLAGS   flags of python -m tflottery.main: --gin_file=... (at least one),
#                --gin_bindings=..., --replicate=...; --tpu and --root_dir are set here
#   --root_dir   a gs:// directory: the TPU VM's own disk is lost with the VM
#   --pod        NAME is a pod slice (v4-32, v3-32, ...).  TensorFlow drives every
#                host of a slice from one Python process, so the job runs on worker
#                0 with --tpu=NAME and TPU_LOAD_LIBRARY=0 (the other hosts serve
#                their chips).  Without --pod: on worker 0, the only one, --tpu=local.
#   --job        names the tmux session (tflottery-ID) and the log
#                ~/tflottery-logs/ID.log on the TPU VM; default: main
#   --wait       stay connected until the job ends and exit with its status (sweeps)
#   --dry-run    print the gcloud command, run nothing (also DRY_RUN=1)
#
# Re-running the same command resumes: a job that is still running is left
# alone (or waited for, with --wait); one that finished, failed or was
# preempted starts again and continues from its checkpoints in --root_dir
# (finished stages are skipped).  A TPU runs one job at a time: the script
# refuses to start a job while another tflottery job runs on the TPU.
#
# e.g.   launch/tpu_run.sh --name=lth-v3 --zone=europe-west4-a --root_dir=gs://my-bucket/runs -- \
#            --gin_file=resnet50_imagenet.gin --gin_file=imp_rewind.gin \
#            --gin_bindings="DatasetHparams.data_dir='gs://my-bucket/tfds'"
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_name="" OPT_zone="" OPT_root_dir="" OPT_project="" OPT_job="main" OPT_pod="" OPT_wait=""
parse_args "name zone root_dir project job" "pod wait" "$@"
require name zone root_dir
check_tpu_name "$OPT_name"
check_zone "$OPT_zone"
check_job "$OPT_job"
[[ "$OPT_root_dir" == gs://?* ]] ||
  die "--root_dir must be a gs:// path (got '$OPT_root_dir'): the TPU VM's disk is lost with the VM"
check_main_flags "tpu root_dir" "${REST[@]}"
tpu_scope "$OPT_zone" "$OPT_project"

# Paths on the TPU VM: '~' is to be expanded there, not here.
# shellcheck disable=SC2088
vm_logs='~/tflottery-logs'
session="tflottery-$OPT_job"
log="$vm_logs/$OPT_job.log"
status="$vm_logs/$OPT_job.status"
script="$vm_logs/$OPT_job.sh"
if [[ -n "$OPT_pod" ]]; then
  where="worker 0 of pod slice $OPT_name"
  env_prefix="TPU_LOAD_LIBRARY=0 "
  main=(python3 -m tflottery.main "--tpu=$OPT_name" "--root_dir=$OPT_root_dir" "${REST[@]}")
else
  where="TPU VM $OPT_name"
  env_prefix=""
  main=(python3 -m tflottery.main --tpu=local "--root_dir=$OPT_root_dir" "${REST[@]}")
fi

# The job is written to a script on the VM (which also records what ran) and
# run by tmux: output appended to the log, exit status kept for --wait.
job="set -o pipefail; cd ~/tflottery-src && $env_prefix$(quote_words "${main[@]}") 2>&1 | tee -a $log; echo \$? > $status"
# Start it unless another tflottery job holds the TPU.
# shellcheck disable=SC2016  # the $ expressions are the TPU VM's
start='OTHER=$(tmux ls -F "#{session_name}" 2>/dev/null | grep "^tflottery-" | head -n 1); '\
'if [ -n "$OTHER" ]; then echo "error: $OTHER is running on this TPU, which runs one job at a time" >&2; exit 1; fi'
start+="; printf '%s\\n' $(quote_arg "$job") > $script; rm -f $status"
start+="; tmux new-session -d -s $session 'bash $script'"
start+="; echo \"started $session on \$(hostname); log: $log\""
steps=(
  'mkdir -p ~/tflottery-logs'
  "if tmux has-session -t $session 2>/dev/null; then echo \"$session is already running on \$(hostname); log: $log\"; else $start; fi"
)
if [[ -n "$OPT_wait" ]]; then
  steps+=("while tmux has-session -t $session 2>/dev/null; do sleep 60; done"
    "exit \"\$(cat $status 2>/dev/null || echo 1)\"")
fi
printf -v remote '%s; ' "${steps[@]}"
remote="${remote%; }"

announce_dry_run
say "Starting job '$OPT_job' on $where: $(quote_words "${main[@]}")"
run gcloud compute tpus tpu-vm ssh "$OPT_name" "${SCOPE[@]}" --worker=0 --command="$remote"
say "Follow the log:"
hint gcloud compute tpus tpu-vm ssh "$OPT_name" "${SCOPE[@]}" --worker=0 \
  --command="tail -n 100 -f $log"
say "TensorBoard (from any machine with access to the bucket):"
hint tensorboard --logdir="$OPT_root_dir"
