# bench/fixtures.sh - section "fixtures" of bench/run.sh (sourced): run
# /bin/true on the config.json each engine generates for a default
# container (bench/fixtures/<engine>.json, captured by
# bench/fixtures/capture.sh), and on the same config without its seccomp
# profile, so the profile's share shows (a fixture without a profile, as
# the CRI plugin's default pod, runs once). Fixtures not captured yet are
# listed in the results as missing.
for f in "${FIXTURES[@]}"; do
  name=${f%%:*}; title=${f#*:}
  fx=$HERE/fixtures/$name.json
  if [ ! -f "$fx" ]; then
    log "fixture $name.json not captured yet (see bench/fixtures/capture.sh)"
    record_value fixtures-missing "$title" "" - count 0
    continue
  fi
  # The parents of the fixture's cgroupsPath (/docker, /kubepods/besteffort/
  # pod<uid>) that no hierarchy has yet are the section's to remove.
  parent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["linux"].get("cgroupsPath", "").strip("/").rpartition("/")[0])' "$fx")
  made=()
  if [ -n "$parent" ]; then
    for c in /sys/fs/cgroup/*/; do [ -d "$c${parent%%/*}" ] || made+=("$c$parent"); done
  fi
  variants=("" nosec)
  python3 -c 'import json, sys; sys.exit("seccomp" not in json.load(open(sys.argv[1])).get("linux", {}))' "$fx" ||
    variants=("")
  for variant in "${variants[@]}"; do
    row=$title; [ "$variant" = nosec ] && row="$title, without seccomp"
    specs=()
    for l in "${LABELS[@]}"; do
      b=$W/fx-$name$variant-$l
      fixture_bundle "$fx" "$b" "$l" "$variant"
      if out=$(rt_of "$l" --root "$W/state-$l" run --bundle "$b" "fx-$l" 2>&1 </dev/null); then
        specs+=("$l=$(bin_of "$l") --root $W/state-$l run --bundle $b fx-$l")
      else
        log "$l cannot run the $name fixture: $(echo "$out" | tail -2 | tr '\n' ' ')"
        rt_of "$l" --root "$W/state-$l" delete -f "fx-$l" >/dev/null 2>&1
      fi
    done
    [ ${#specs[@]} -gt 0 ] && hf fixtures "$row" "" "$RUNS" "${specs[@]}"
  done
  for d in "${made[@]}"; do
    p=$parent
    while [ -n "$p" ] && rmdir "$d" 2>/dev/null; do
      [ "$p" = "${p%/*}" ] && break
      p=${p%/*}; d=${d%/*}
    done
  done
done
