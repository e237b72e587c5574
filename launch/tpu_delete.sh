#!/usr/bin/env bash
# Delete a Cloud TPU VM (or the queued resource that made it), which stops
# its billing.  Run directories in gs:// are kept.
#
# Usage: launch/tpu_delete.sh --name=NAME --zone=ZONE [--project=PROJECT] [--queued] [--dry-run]
#
#   --queued   NAME is a queued resource (launch/tpu_create.sh --queued): delete it
#              together with its TPU VM
#   --dry-run  print the gcloud command, run nothing (also DRY_RUN=1)
#
# No confirmation prompt (--quiet): scripts and sweeps must not block on one.
#
# e.g.   launch/tpu_delete.sh --name=lth-v3 --zone=europe-west4-a
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_name="" OPT_zone="" OPT_project="" OPT_queued=""
parse_args "name zone project" "queued" "$@"
no_rest
require name zone
check_tpu_name "$OPT_name"
check_zone "$OPT_zone"
tpu_scope "$OPT_zone" "$OPT_project"

announce_dry_run
if [[ -n "$OPT_queued" ]]; then
  say "Deleting queued resource $OPT_name and its TPU VM in $OPT_zone"
  run gcloud compute tpus queued-resources delete "$OPT_name" "${SCOPE[@]}" --force --quiet
else
  say "Deleting TPU VM $OPT_name in $OPT_zone"
  run gcloud compute tpus tpu-vm delete "$OPT_name" "${SCOPE[@]}" --quiet
fi
