# bench/core.sh - section "core" of bench/run.sh (sourced): the rows of one
# container's life on the base bundle (/bin/true, runc's default spec).
#   run            create+start+wait+delete (the attached run deletes)
#   create/start/delete  timed one by one, runtimes interleaved, LOOP times
#   state, exec    on a running container (sleep 1000)
#   SEQ sequential runs (total, in 5 interleaved rounds), peak RSS of run,
#   binary size

specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l run --bundle $W/b r-$l"); done
hf core "run /bin/true" "" "$RUNS" "${specs[@]}"

for l in "${LABELS[@]}"; do : > "$W/raw/create.$l"; : > "$W/raw/start.$l"; : > "$W/raw/delete.$l"; done
for i in $(seq "$LOOP"); do
  for l in "${LABELS[@]}"; do
    st="$S/state-$l"; id="csd-$i"
    now_us t0; rt_of "$l" --root "$st" create --bundle "$W/b" "$id" </dev/null >/dev/null 2>&1; now_us t1
    rt_of "$l" --root "$st" start "$id" </dev/null >/dev/null 2>&1; now_us t2
    wait_stopped "$l" "$st" "$id"
    now_us t3; rt_of "$l" --root "$st" delete "$id" </dev/null >/dev/null 2>&1; now_us t4
    us_ms "$t0" "$t1" >> "$W/raw/create.$l"
    us_ms "$t1" "$t2" >> "$W/raw/start.$l"
    us_ms "$t3" "$t4" >> "$W/raw/delete.$l"
  done
done
for l in "${LABELS[@]}"; do
  for m in create start delete; do record core "$m" "" "$l" ms "$W/raw/$m.$l"; done
done

# state and exec of a running container.
mkbundle "$W/bs" '["/bin/sleep", "1000"]'
for l in "${LABELS[@]}"; do rt_of "$l" --root "$S/state-$l" run -d --bundle "$W/bs" held </dev/null >/dev/null 2>"$W/err" || die "$l: run -d failed: $(tail -3 "$W/err")"; done
specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l state held"); done
hf core "state" "" "$RUNS" "${specs[@]}"
specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l exec held /bin/true"); done
hf core "exec /bin/true" "" "$RUNS" "${specs[@]}"
for l in "${LABELS[@]}"; do rt_of "$l" --root "$S/state-$l" delete -f held >/dev/null 2>&1; done

# SEQ sequential runs, total time, in 5 rounds of SEQ/5 runs per runtime,
# the order reversed every other round (as hf's rows): a host that slows
# down during the row slows every runtime alike.
declare -A seq_us=()
for l in "${LABELS[@]}"; do seq_us[$l]=0; done
for r in 1 2 3 4 5; do
  n=$(( SEQ * r / 5 - SEQ * (r - 1) / 5 ))
  order=("${LABELS[@]}")
  if [ $((r % 2)) -eq 0 ]; then order=(); for ((k = ${#LABELS[@]} - 1; k >= 0; k--)); do order+=("${LABELS[$k]}"); done; fi
  for l in "${order[@]}"; do
    now_us t0
    for ((i = 0; i < n; i++)); do rt_of "$l" --root "$S/state-$l" run --bundle "$W/b" "seq-$r-$i" </dev/null >/dev/null 2>&1; done
    now_us t1
    seq_us[$l]=$(( ${seq_us[$l]} + t1 - t0 ))
  done
done
for l in "${LABELS[@]}"; do record_value core "$SEQ sequential runs" "" "$l" ms "$(us_ms 0 "${seq_us[$l]}")"; done

# Peak RSS of run (KiB), median of 5; binary size.
for l in "${LABELS[@]}"; do
  for i in 1 2 3 4 5; do
    /usr/bin/time -f %M -o "$W/rss" "$(bin_of "$l")" --root "$S/state-$l" run --bundle "$W/b" rss </dev/null >/dev/null 2>&1
    tail -1 "$W/rss"
  done > "$W/raw/rss.$l"
  record core "peak RSS of run" "" "$l" KiB "$W/raw/rss.$l"
  record_value core "binary size" "" "$l" KiB $(( $(stat -L -c %s "$(bin_of "$l")") / 1024 ))
done
