#!/usr/bin/env python3
"""symbols.py MAP ADDRS...: the text symbols (from LLD's -Map output) that
contain the traced addresses, in the order they were first reached, one per
line: the --symbol-ordering-file of crates/nk-runtime/build.rs."""
import bisect
import sys

syms = []  # (address, name) of every symbol inside .text
text = None
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 5:
        continue
    try:
        vma, size = int(f[0], 16), int(f[2], 16)
    except ValueError:
        continue
    name = f[4]
    if name.startswith("."):
        # An output section line: remember where .text is.
        if name == ".text":
            text = (vma, vma + size)
        continue
    if ":(" in name or text is None or not text[0] <= vma < text[1]:
        continue
    syms.append((vma, name))
if not syms:
    sys.exit("symbols.py: no .text symbols in " + sys.argv[1])
syms.sort()
starts = [a for a, _ in syms]
seen = set()
for path in sys.argv[2:]:
    for line in open(path):
        a = int(line, 16)
        i = bisect.bisect_right(starts, a) - 1
        if i < 0 or a >= text[1]:
            continue
        # Every symbol at that address (aliases) goes in, once.
        j = i
        while j >= 0 and starts[j] == starts[i]:
            n = syms[j][1]
            if n not in seen:
                seen.add(n)
                print(n)
            j -= 1
