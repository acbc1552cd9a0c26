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
  fixture_cgroup_parents "$fx"
  variants=("" nosec)
  python3 -c 'import json, sys; sys.exit("seccomp" not in json.load(open(sys.argv[1])).get("linux", {}))' "$fx" ||
    variants=("")
  for variant in "${variants[@]}"; do
    row=$title; [ "$variant" = nosec ] && row="$title, without seccomp"
    specs=()
    for l in "${LABELS[@]}"; do
      b=$W/fx-$name$variant-$l
      fixture_bundle "$fx" "$b" "$l" "$variant"
      if out=$(rt_of "$l" --root "$S/state-$l" run --bundle "$b" "fx-$l" 2>&1 </dev/null); then
        specs+=("$l=$(bin_of "$l") --root $S/state-$l run --bundle $b fx-$l")
      else
        log "$l cannot run the $name fixture: $(echo "$out" | tail -2 | tr '\n' ' ')"
        rt_of "$l" --root "$S/state-$l" delete -f "fx-$l" >/dev/null 2>&1
      fi
    done
    [ ${#specs[@]} -gt 0 ] && hf fixtures "$row" "" "$RUNS" "${specs[@]}"
  done
  remove_fixture_cgroup_parents
done
