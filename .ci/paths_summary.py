#!/usr/bin/env python3
"""Summarises which ISA paths a test run executed and which it skipped, and
why, from the lines tilejit_verify::paths prints:

    ISA path <path>: executed [<test>]
    ISA path <path>: SKIPPED [<test>] <reason>

Usage: paths_summary.py LOG TITLE. Exits 1 if the log holds no such line
(a run that reports nothing has not shown what it covered)."""
import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"ISA path (\S+): (executed|SKIPPED) \[([^\]]*)\]\s*(.*)")


def main(log, title):
    executed = defaultdict(set)
    skipped = defaultdict(dict)
    with open(log, errors="replace") as f:
        for line in f:
            m = LINE.search(line)
            if not m:
                continue
            path, status, test, reason = m.groups()
            if status == "executed":
                executed[path].add(test)
            else:
                skipped[path][test] = reason
    print(f"== ISA paths: {title}")
    if not executed and not skipped:
        print("no path lines in the log: the run did not say what it covered")
        return 1
    for path in ["amx", "avx512", "scalar"] + sorted((set(executed) | set(skipped)) - {"amx", "avx512", "scalar"}):
        ran, left = executed.get(path, set()), skipped.get(path, {})
        if not ran and not left:
            continue
        print(f"{path:<7} executed by {len(ran)} test(s), skipped by {len(left)}")
        for reason, n in Counter(left.values()).most_common():
            print(f"          skipped ({n}): {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
