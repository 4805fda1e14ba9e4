# dra-lab's own stand-in for the bats-file library (file-system assertions for bats).
#
# Why: the upstream driver's bats files `load '/bats-libraries/bats-file/load.bash'`, but bats-file is not on
# npm (bats, bats-support and bats-assert are), and this lab reaches no git hosts. None of the upstream files
# calls a bats-file function today; this file gives the common assertions so a future use fails with a clear
# message rather than "command not found". It is our code, written from the documented behaviour (a failing
# assertion prints what it checked to stderr and returns 1), not a copy. scripts/upstream-bats.sh points
# /bats-libraries/bats-file at this directory.
#
# Needs bats-support loaded first (it provides `fail` and `batslib_print_kv_single`), as the upstream
# helpers.sh does.

_bf_fail() {  # <what> <path>
  batslib_print_kv_single 4 'path' "$2" | batslib_decorate "$1" | fail
}

assert_exists() { [[ -e "$1" ]] || _bf_fail 'file or directory does not exist' "$1"; }
assert_not_exists() { [[ ! -e "$1" ]] || _bf_fail 'file or directory exists, but it was expected to be absent' "$1"; }
assert_file_exists() { [[ -f "$1" ]] || _bf_fail 'file does not exist' "$1"; }
assert_file_not_exists() { [[ ! -f "$1" ]] || _bf_fail 'file exists, but it was expected to be absent' "$1"; }
assert_dir_exists() { [[ -d "$1" ]] || _bf_fail 'directory does not exist' "$1"; }
assert_dir_not_exists() { [[ ! -d "$1" ]] || _bf_fail 'directory exists, but it was expected to be absent' "$1"; }
assert_link_exists() { [[ -L "$1" ]] || _bf_fail 'symbolic link does not exist' "$1"; }
assert_link_not_exists() { [[ ! -L "$1" ]] || _bf_fail 'symbolic link exists, but it was expected to be absent' "$1"; }
assert_file_executable() { [[ -x "$1" ]] || _bf_fail 'file is not executable' "$1"; }
assert_file_not_executable() { [[ ! -x "$1" ]] || _bf_fail 'file is executable, but it was expected not to be' "$1"; }
assert_file_empty() { [[ -f "$1" && ! -s "$1" ]] || _bf_fail 'file is not empty' "$1"; }
assert_file_not_empty() { [[ -s "$1" ]] || _bf_fail 'file empty, but it was expected to contain something' "$1"; }

# assert_file_contains <file> <regex> [grep|egrep]: the file has a line matching the (extended) regex.
assert_file_contains() {
  local file="$1" regex="$2"
  grep -qE -- "$regex" "$file" 2>/dev/null || {
    batslib_print_kv_single 6 'path' "$file" 'regex' "$regex" | batslib_decorate 'file does not contain regex' | fail
  }
}
assert_file_not_contains() {
  local file="$1" regex="$2"
  ! grep -qE -- "$regex" "$file" 2>/dev/null || {
    batslib_print_kv_single 6 'path' "$file" 'regex' "$regex" | batslib_decorate 'file contains regex' | fail
  }
}

# temp_make [--prefix P]: a fresh directory under BATS_RUN_TMPDIR (or TMPDIR); prints its path.
temp_make() {
  local prefix=''
  [[ "${1:-}" == --prefix ]] && prefix="$2"
  mktemp -d "${BATS_RUN_TMPDIR:-${TMPDIR:-/tmp}}/${prefix}bats-file-XXXXXX"
}
# temp_del <dir>: remove a directory made by temp_make (kept when BATSLIB_TEMP_PRESERVE=1).
temp_del() {
  [[ "${BATSLIB_TEMP_PRESERVE:-0}" == 1 ]] && return 0
  rm -rf -- "$1"
}
