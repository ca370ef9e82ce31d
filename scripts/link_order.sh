# Sourced by scripts/build_release.sh and scripts/build_edge.sh.
#
# report_missing ORDER MAP RETAKE: says how many names of the link order
# ORDER the build whose linker map is MAP no longer has (renamed, removed
# or now inlined), and that RETAKE retakes it: the linker leaves their
# callers' code where the compiler put it, among the cold code, and an
# idle agent maps more pages of it.
report_missing() {
  local order=$1 map=$2 retake=$3 missing
  missing=$(awk 'NR == FNR { want[$0] = 1; total++; next }
    match($0, /:\(\.text\.[^)]*\)/) {
      name = substr($0, RSTART + 2, RLENGTH - 3)
      sub(/^\.text\.(hot\.|unlikely\.|startup\.|exit\.|split\.)?/, "", name)
      if (name in want) { found++; delete want[name] }
    }
    END { print total - found }' "$order" "$map")
  if [ "$missing" -gt 0 ]; then
    echo "layout: $missing of the $(wc -l <"$order") functions in $order are not in this build; retake it with $retake if the idle agent's resident code grows"
  fi
}
