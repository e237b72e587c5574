#!/usr/bin/env bash
# Copy run directories back from Cloud Storage.
#
# Usage: launch/tpu_fetch.sh --from=gs://BUCKET/PATH --to=LOCAL_DIR [--no-checkpoints]
#            [--gsutil] [--dry-run]
#
#   --from            a gs:// run root or one run directory in it
#   --to              local directory; FROM is copied to LOCAL_DIR/<last part of FROM>
#   --no-checkpoints  leave out every checkpoints/ directory (metrics, masks, summaries
#                     and configs only: megabytes instead of gigabytes for ImageNet)
#   --gsutil          use gsutil instead of gcloud storage (older Cloud SDKs)
#   --dry-run         print the commands, run nothing (also DRY_RUN=1)
#
# Safe to re-run: with --no-checkpoints it is an rsync, which copies only what
# changed; without it a full recursive copy.
#
# e.g.   launch/tpu_fetch.sh --from=gs://my-bucket/runs --to=results --no-checkpoints
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OPT_from="" OPT_to="" OPT_no_checkpoints="" OPT_gsutil=""
parse_args "from to" "no-checkpoints gsutil" "$@"
no_rest
require from to
[[ "$OPT_from" == gs://?* ]] || die "--from must be a gs:// path, got '$OPT_from'"
src="${OPT_from%/}"
dest="${OPT_to%/}/${src##*/}"
# Relative paths under FROM that hold checkpoints (Python regular expression).
no_ckpt='(.*/)?checkpoints/.*'

announce_dry_run
say "Copying $src to $dest"
run mkdir -p "$OPT_to"
if [[ -n "$OPT_no_checkpoints" ]]; then
  run mkdir -p "$dest"
  if [[ -n "$OPT_gsutil" ]]; then
    run gsutil -m rsync -r -x "$no_ckpt" "$src" "$dest"
  else
    run gcloud storage rsync --recursive --exclude="$no_ckpt" "$src" "$dest"
  fi
elif [[ -n "$OPT_gsutil" ]]; then
  run gsutil -m cp -r "$src" "$OPT_to/"
else
  run gcloud storage cp -r "$src" "$OPT_to/"
fi
say "Summaries of a lottery run: python -m tflottery.report $dest/<run directory>"
