#!/usr/bin/env bash
# Multi-worker GPU training: start the same tflottery command on every host
# with its own TF_CONFIG, so that tflottery.training.strategy picks
# MultiWorkerMirroredStrategy (all GPUs of all hosts, synchronous).
#
# Usage: launch/gpu_multiworker.sh --hosts=HOST1,HOST2[,...] [--port=PORT] [--workdir=DIR]
#            [--python=PYTHON] [--job=ID] [--print-tf-config] [--dry-run] -- MAIN_FLAGS...
#
#   --hosts            the machines, in worker order; worker 0 (the first) is the
#                      chief, whose run directory (under --root_dir) is the one to
#                      report on
#   --port             first port of the collective ops; worker i listens on PORT+i
#                      (default 12345), so one host may appear more than once
#   --workdir          the tflottery checkout on the hosts (default: this checkout's
#                      path, as on a shared file system)
#   --python           the Python with tflottery installed, on the hosts (default python3)
#   --job              names the logs ~/tflottery-logs/ID-worker<i>.log (default: main)
#   --print-tf-config  only print each worker's TF_CONFIG (to start the workers by
#                      other means, e.g. a cluster scheduler); nothing is run
#   --dry-run          print the ssh commands, run nothing (also DRY_RUN=1)
#   MAIN_FLAGS         flags of python -m tflottery.main, the same for every worker.
#                      Every worker keeps a complete run tree of its own and reads
#                      only that: the chief under --root_dir, worker i under the
#                      sibling ROOT_DIR.worker_<i> (gs://b/runs -> gs://b/runs.worker_1),
#                      so --root_dir may be local to each host or shared (gs://)
#
# Needs password-less ssh to every host (BatchMode: no prompts) and the hosts
# able to reach each other on the ports.  The workers run under nohup and
# survive the ssh session; their pids are kept in ~/tflottery-logs/ID-worker<i>.pid.
# Re-running the same command starts the workers that are not running, and the
# run resumes from its checkpoints.  (All workers must run: if one died, stop
# the others and re-run.)
#
# e.g.   launch/gpu_multiworker.sh --hosts=gpu1,gpu2 -- --gin_file=resnet20_cifar10.gin \
#            --root_dir=/shared/runs
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_hosts="" OPT_port="12345" OPT_workdir="$REPO_DIR" OPT_python="python3" OPT_job="main"
OPT_print_tf_config=""
parse_args "hosts port workdir python job" "print-tf-config" "$@"
require hosts
check_job "$OPT_job"
if ! [[ "$OPT_port" =~ ^[0-9]+$ ]] || ((OPT_port < 1024 || OPT_port > 65000)); then
  die "--port must be a number from 1024 to 65000, got '$OPT_port'"
fi
IFS=',' read -r -a hosts <<<"$OPT_hosts"
((${#hosts[@]} >= 1)) || usage_error "--hosts names no host"
for host in "${hosts[@]}"; do
  [[ "$host" =~ ^([A-Za-z0-9_.-]+@)?[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
    die "host '$host' is not a host name (user@host or host; separate hosts with commas)"
done
if [[ -z "$OPT_print_tf_config" ]]; then
  check_main_flags "" "${REST[@]}"
fi

# TF_CONFIG: every worker's address, and which one this is.
addresses=""
for i in "${!hosts[@]}"; do
  addresses+="${addresses:+,}\"${hosts[$i]#*@}:$((OPT_port + i))\""
done
tf_config() {
  printf '{"cluster": {"worker": [%s]}, "task": {"type": "worker", "index": %d}}' "$addresses" "$1"
}

if [[ -n "$OPT_print_tf_config" ]]; then
  for i in "${!hosts[@]}"; do
    echo "# worker $i on ${hosts[$i]}$( ((i == 0)) && echo ' (chief)')"
    echo "export TF_CONFIG=$(quote_arg "$(tf_config "$i")")"
  done
  exit 0
fi

announce_dry_run
say "Starting ${#hosts[@]} workers: $(quote_words python -m tflottery.main "${REST[@]}")"
say "The chief writes under --root_dir, worker i under its sibling ROOT_DIR.worker_<i>."
# Paths on the hosts: '~' is to be expanded there, not here.
# shellcheck disable=SC2088
vm_logs='~/tflottery-logs'
for i in "${!hosts[@]}"; do
  log="$vm_logs/$OPT_job-worker$i.log"
  pid="$vm_logs/$OPT_job-worker$i.pid"
  start="cd $(quote_arg "$OPT_workdir") || exit 1"
  start+="; TF_CONFIG=$(quote_arg "$(tf_config "$i")") nohup $(quote_words "$OPT_python" -m tflottery.main "${REST[@]}")"
  start+=" >> $log 2>&1 < /dev/null & echo \$! > $pid; echo \"worker $i started on \$(hostname); log: $log\""
  cmd="mkdir -p $vm_logs; if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then"
  cmd+=" echo \"worker $i is already running on \$(hostname) (pid \$(cat $pid))\"; else $start; fi"
  say "Worker $i on ${hosts[$i]}$( ((i == 0)) && echo ' (chief)')"
  run ssh -n -o BatchMode=yes "${hosts[$i]}" "$cmd"
done
say "Follow the chief's log, stop a worker:"
hint ssh "${hosts[0]}" "tail -f $vm_logs/$OPT_job-worker0.log"
hint ssh "${hosts[0]}" "kill \$(cat $vm_logs/$OPT_job-worker0.pid)"
