#!/usr/bin/env bash
# The short way: install this checkout on an existing Cloud TPU VM and start
# an experiment there (launch/tpu_install.sh, then launch/tpu_run.sh).
#
# Usage: launch/tpu_vm.sh [--dry-run] TPU_NAME ZONE GS_ROOT_DIR GIN_FILE [more main.py flags...]
#        (--dry-run, or DRY_RUN=1, prints the commands instead of running them)
# e.g.   launch/tpu_vm.sh my-v3-8 europe-west4-a gs://my-bucket/runs resnet50_imagenet.gin \
#            --gin_bindings="DatasetHparams.data_dir='gs://my-bucket/tfds'"
#
# The run starts in a tmux session on the VM, so it survives the ssh
# connection; re-running this command after a preemption (on a re-created
# VM) resumes it from its checkpoints in GS_ROOT_DIR.  For pod slices, job
# names, --wait, projects: use tpu_install.sh and tpu_run.sh directly.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --dry-run) DRY_RUN=1; shift ;;
esac
(($# >= 4)) || usage_error "need TPU_NAME ZONE GS_ROOT_DIR GIN_FILE"
tpu="$1" zone="$2" root="$3" gin="$4"
shift 4
export DRY_RUN
"$LAUNCH_DIR/tpu_install.sh" --name="$tpu" --zone="$zone"
"$LAUNCH_DIR/tpu_run.sh" --name="$tpu" --zone="$zone" --root_dir="$root" -- \
  --gin_file="$gin" "$@"
