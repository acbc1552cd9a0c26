# bench/cost.sh - section "cost" of bench/run.sh (sourced): what -E and
# --trace cost nk-runtime, and the bound on what "off" costs
# (bench/explain-cost.sh, its rows appended to the results).
RESULTS=$RES RUNS=$RUNS NK=$NK STATE_ROOT=$S/state-explain "$HERE/explain-cost.sh" > "$W/explain-cost.txt" 2>&1 \
  || die "explain-cost.sh failed: $(tail -5 "$W/explain-cost.txt")"
cp "$W/explain-cost.txt" "$OUT/explain-cost.txt"
