# bench/hang.sh - section "hang" of bench/run.sh (sourced): HANG runs of
# /bin/true under nk-runtime, each with a 10 s watchdog; none may hang.
hangs=0
for i in $(seq "$HANG"); do
  timeout -k 1 10 "$NK" --root "$S/state-nk" run --bundle "$W/b" "hang-$i" </dev/null >/dev/null 2>&1
  rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then hangs=$((hangs+1)); "$NK" --root "$S/state-nk" delete -f "hang-$i" >/dev/null 2>&1; fi
done
record_value hang "runs of /bin/true that hung" "$HANG" nk count "$hangs"
HUNG=$hangs
