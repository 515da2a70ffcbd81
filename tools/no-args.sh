# SPDX-License-Identifier: MIT
# Sourced first by the repository's scripts that take no arguments: -h or
# --help prints the calling script's header comment, anything else is
# refused, and the script then runs from the repository's root.
case "${1:-}" in
-h|--help) sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
"") ;;
*) echo "$(basename "$0"): rejected '$1': this script takes no arguments (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 2
