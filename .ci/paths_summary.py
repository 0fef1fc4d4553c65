#!/usr/bin/env python3
"""Summarises which ISA paths a test run executed and which it skipped, and
why, from the lines tilejit_verify::paths prints:

    ISA path <path>: executed [<test>]
    ISA path <path>: EMULATED [<test>] <why not natively>
    ISA path <path>: SKIPPED [<test>] <reason>

Usage: paths_summary.py LOG TITLE. Exits 1 if the log holds no such line
(a run that reports nothing has not shown what it covered)."""
import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"ISA path (\S+): (executed|EMULATED|SKIPPED) \[([^\]]*)\]\s*(.*)")


def main(log, title):
    executed = defaultdict(set)
    emulated = defaultdict(set)
    skipped = defaultdict(dict)
    with open(log, errors="replace") as f:
        for line in f:
            m = LINE.search(line)
            if not m:
                continue
            path, status, test, reason = m.groups()
            if status == "executed":
                executed[path].add(test)
            elif status == "EMULATED":
                emulated[path].add(test)
            else:
                skipped[path][test] = reason
    print(f"== ISA paths: {title}")
    if not executed and not skipped and not emulated:
        print("no path lines in the log: the run did not say what it covered")
        return 1
    seen = set(executed) | set(skipped) | set(emulated)
    for path in ["amx", "avx512", "scalar"] + sorted(seen - {"amx", "avx512", "scalar"}):
        ran, emu, left = executed.get(path, set()), emulated.get(path, set()), skipped.get(path, {})
        if not ran and not left and not emu:
            continue
        print(f"{path:<7} executed natively by {len(ran)} test(s), emulated by {len(emu)}, skipped by {len(left)}")
        for reason, n in Counter(left.values()).most_common():
            print(f"          skipped ({n}): {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
