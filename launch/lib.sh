# shellcheck shell=bash
# Shared helpers of the launch/*.sh scripts (sourced, not run).
#
# Why one file: every script needs the same option parsing, the same dry-run
# behaviour (print each gcloud/ssh command, run nothing) and the same
# one-line errors, and they must not drift apart.
#
# Conventions for a script that sources this file:
#   - its header comment (from line 2 to the first line not starting with '#')
#     is its usage text: -h/--help prints it, a missing argument prints it
#     to stderr and exits with status 2;
#   - a bad value is one line 'error: ...' on stderr and exit status 2;
#   - every external command goes through `run`, which prints it as
#     '+ cmd args...' (shell-quoted, so it can be copied) and, unless
#     DRY_RUN=1 (or --dry-run), runs it.

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LAUNCH_DIR/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"
REST=()
# Read by the scripts that source this file (exported so that shellcheck,
# linting this file alone, does not take them for unused).
export LAUNCH_DIR REPO_DIR

usage() {
  # The calling script's header comment, without the leading '# '.
  sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p;}' "$0"
}

usage_error() {
  # A missing or malformed argument: the usage, then the one-line reason.
  usage >&2
  echo "error: $*" >&2
  exit 2
}

die() {
  echo "error: $*" >&2
  exit 2
}

say() {
  # What the script is about to do, in words.
  echo "==> $*"
}

quote_arg() {
  # One argument as a shell word that reads well: bare when safe, else in
  # single quotes (after a leading --flag=, which stays outside them).
  local s="$1" head=""
  if [[ "$s" =~ ^[-A-Za-z0-9_@%+=:,./]+$ ]]; then
    printf '%s' "$s"
    return
  fi
  if [[ "$s" =~ ^(--[A-Za-z0-9_-]+=)(.*)$ ]]; then
    head="${BASH_REMATCH[1]}"
    s="${BASH_REMATCH[2]}"
  fi
  printf "%s'%s'" "$head" "${s//\'/\'\\\'\'}"
}

show_cmd() {
  # The command as one copyable line: '+ cmd arg...'.
  local out="+" arg
  for arg in "$@"; do
    out+=" $(quote_arg "$arg")"
  done
  echo "$out"
}

hint() {
  # A command for the user to run later: indented, never run, never '+ '.
  echo "    $(quote_words "$@")"
}

run() {
  show_cmd "$@"
  if [[ "$DRY_RUN" == 1 ]]; then
    return 0
  fi
  "$@"
}

announce_dry_run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "dry run: the commands are printed, not run"
  fi
}

# parse_args "VALUE FLAGS" "BOOLEAN FLAGS" "$@"
#   Accepts --flag=value and --flag value for value flags, --flag for
#   booleans, -h/--help, --dry-run, and '--' after which everything goes
#   into the REST array.  Sets OPT_<flag> (dashes become underscores); the
#   script initialises those variables first (set -u, and so that shellcheck
#   sees them assigned).
parse_args() {
  local value_flags=" $1 " bool_flags=" $2 "
  shift 2
  REST=()
  while (($#)); do
    local arg="$1" name value=""
    case "$arg" in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift; continue ;;
      --) shift; REST=("$@"); return 0 ;;
      --*=*) name="${arg%%=*}"; value="${arg#*=}" ;;
      --*) name="$arg" ;;
      *) usage_error "unexpected argument '$arg' (main.py flags go after '--')" ;;
    esac
    name="${name#--}"
    if [[ "$value_flags" == *" $name "* ]]; then
      if [[ "$arg" != *=* ]]; then
        (($# >= 2)) || usage_error "--$name needs a value"
        value="$2"
        shift
      fi
      [[ -n "$value" ]] || usage_error "--$name needs a value"
      printf -v "OPT_${name//-/_}" '%s' "$value"
    elif [[ "$bool_flags" == *" $name "* ]]; then
      [[ "$arg" != *=* ]] || usage_error "--$name takes no value"
      printf -v "OPT_${name//-/_}" '%s' 1
    else
      usage_error "unknown option --$name"
    fi
    shift
  done
}

no_rest() {
  # For scripts that pass nothing on to main.py: refuse anything after '--'.
  ((${#REST[@]} == 0)) || usage_error "unexpected arguments after '--': ${REST[*]}"
}

require() {
  # require FLAG...: each --FLAG must have been given.
  local flag var
  for flag in "$@"; do
    var="OPT_${flag//-/_}"
    [[ -n "${!var:-}" ]] || usage_error "missing --$flag"
  done
}

check_tpu_name() {
  # Cloud TPU names: lower-case letters, digits and '-', starting with a letter.
  [[ "$1" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
    die "TPU name '$1' is not valid: use lower-case letters, digits and '-', starting with a letter"
}

check_zone() {
  [[ "$1" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] ||
    die "zone '$1' does not look like a Google Cloud zone (e.g. europe-west4-a, us-central2-b)"
}

check_job() {
  # Job names become tmux session and log file names (tmux refuses '.' and ':').
  [[ "$1" =~ ^[A-Za-z0-9][-A-Za-z0-9_]*$ ]] ||
    die "job name '$1' may only hold letters, digits, '-' and '_'"
}

quote_words() {
  # Several arguments as one line of shell words (see quote_arg).
  local out="" arg
  for arg in "$@"; do
    out+="${out:+ }$(quote_arg "$arg")"
  done
  printf '%s' "$out"
}

check_main_flags() {
  # The python -m tflottery.main flags given after '--': a gin file at least,
  # and not the flags the calling script sets itself (named in $1).
  local reserved=" $1 " arg name has_gin=""
  shift
  for arg in "$@"; do
    name="${arg%%=*}"
    if [[ "$reserved" == *" ${name#--} "* ]]; then
      die "$name is set by this script; leave it out of the flags after '--'"
    fi
    if [[ "$name" == --gin_file ]]; then
      has_gin=1
    fi
  done
  [[ -n "$has_gin" ]] || usage_error "give the experiment after '--', e.g. -- --gin_file=resnet50_imagenet.gin"
}

# tpu_scope ZONE [PROJECT]: sets SCOPE, the --zone (and --project, when
# given) of every gcloud TPU command.
tpu_scope() {
  # shellcheck disable=SC2034  # SCOPE is read by the calling script
  SCOPE=("--zone=$1")
  if [[ -n "${2:-}" ]]; then
    SCOPE+=("--project=$2")
  fi
}
