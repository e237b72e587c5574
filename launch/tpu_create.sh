#!/usr/bin/env bash
# Create a Cloud TPU VM for tflottery, directly or through a queued resource.
#
# Usage: launch/tpu_create.sh --name=NAME --zone=ZONE --accelerator-type=TYPE --version=RUNTIME
#            [--project=PROJECT] [--spot | --preemptible] [--queued] [--dry-run]
#
#   --name              the TPU's name (lower-case letters, digits, '-')
#   --zone              a zone that has the accelerator, e.g. europe-west4-a (v3),
#                       us-central2-b (v4)
#   --accelerator-type  v3-8, v4-8 (one host), v4-32, v3-32 ... (pod slices)
#   --version           the TPU VM software image, e.g. tpu-vm-tf-2.16.1-pjrt for
#                       one host, tpu-vm-tf-2.16.1-pod-pjrt for pod slices
#   --project           default: gcloud's configured project
#   --spot              Spot capacity: much cheaper, may be preempted at any time
#                       (tflottery resumes: re-create, re-install, re-run)
#   --preemptible       the older preemptible TPUs (not with --queued)
#   --queued            request a queued resource: waits for capacity instead of
#                       failing when the zone has none; the TPU VM gets NAME
#   --dry-run           print the gcloud commands, run nothing (also DRY_RUN=1)
#
# e.g.   launch/tpu_create.sh --name=lth-v3 --zone=europe-west4-a --accelerator-type=v3-8 \
#            --version=tpu-vm-tf-2.16.1-pjrt --spot
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_name="" OPT_zone="" OPT_accelerator_type="" OPT_version="" OPT_project=""
OPT_spot="" OPT_preemptible="" OPT_queued=""
parse_args "name zone accelerator-type version project" "spot preemptible queued" "$@"
no_rest
require name zone accelerator-type version
check_tpu_name "$OPT_name"
check_zone "$OPT_zone"
[[ "$OPT_accelerator_type" =~ ^v[0-9][a-z]*-[0-9]+$ ]] ||
  die "accelerator type '$OPT_accelerator_type' does not look like v3-8, v4-32, v5litepod-8, ..."
if [[ -n "$OPT_spot" && -n "$OPT_preemptible" ]]; then
  die "choose one of --spot and --preemptible"
fi
if [[ -n "$OPT_queued" && -n "$OPT_preemptible" ]]; then
  die "queued resources take --spot, not --preemptible"
fi

tpu_scope "$OPT_zone" "$OPT_project"
capacity="on-demand"
extra=()
if [[ -n "$OPT_spot" ]]; then
  capacity="spot"
  extra+=(--spot)
elif [[ -n "$OPT_preemptible" ]]; then
  capacity="preemptible"
  extra+=(--preemptible)
fi

announce_dry_run
if [[ -n "$OPT_queued" ]]; then
  say "Requesting queued resource $OPT_name: $OPT_accelerator_type, $OPT_version, $capacity, in $OPT_zone"
  run gcloud compute tpus queued-resources create "$OPT_name" --node-id="$OPT_name" "${SCOPE[@]}" \
    --accelerator-type="$OPT_accelerator_type" --runtime-version="$OPT_version" "${extra[@]}"
  say "The TPU VM exists once the request is ACTIVE; watch it with:"
  hint gcloud compute tpus queued-resources describe "$OPT_name" "${SCOPE[@]}"
else
  say "Creating TPU VM $OPT_name: $OPT_accelerator_type, $OPT_version, $capacity, in $OPT_zone"
  run gcloud compute tpus tpu-vm create "$OPT_name" "${SCOPE[@]}" \
    --accelerator-type="$OPT_accelerator_type" --version="$OPT_version" "${extra[@]}"
fi
say "Next: launch/tpu_install.sh --name=$OPT_name --zone=$OPT_zone"
