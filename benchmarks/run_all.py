"""Run every ``bench_*.py`` (``--quick`` default, or ``--full``) and refresh the README results table.

Each script writes ``benchmarks/results/<name>.json``; this collects them into the table between
the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def run_scripts(size: str) -> list[str]:
    """Run each benchmark script in its own process; return the names of those that failed."""
    failed = []
    for script in sorted(BENCH_DIR.glob("bench_*.py")):
        print(f"=== {script.name} --{size}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), f"--{size}"])
        print(f"=== {script.name}: exit {proc.returncode} in {time.perf_counter() - t0:.1f} s", flush=True)
        if proc.returncode != 0:
            failed.append(script.name)
    return failed


def results_table() -> str:
    """Markdown table of every results file (ratio = peer time / matcli time; > 1 means matcli is faster)."""
    lines = []
    machine = None
    dates: dict[str, str] = {}
    for path in sorted((BENCH_DIR / "results").glob("*.json")):
        payload = json.loads(path.read_text())
        machine = payload["machine"]
        dates[payload["benchmark"]] = machine["date"]
        for row in payload["rows"]:
            ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            peer_s = "n/a" if row["peer_seconds"] is None else f"{row['peer_seconds']:.3f}"
            lines.append(f"| {payload['benchmark']} ({payload['size']}) | {row['workload']} | {row['peer']} | "
                         f"{peer_s} | {row['matcli_seconds']:.3f} | {ratio} | {row['matcli_accuracy']} | "
                         f"{row['target']} |")
    if machine is None:
        return "No benchmark results yet: run `make bench`."
    when = sorted(set(dates.values()))
    date = when[0] if len(when) == 1 else ", ".join(f"{name} {day}" for name, day in sorted(dates.items()))
    head = (f"Measured {date} on {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
            f"Python {machine['python']}. Ratio = peer time / matcli time (> 1: matcli faster).\n\n"
            "| benchmark | workload | peer | peer s | matcli s | ratio | matcli accuracy | target |\n"
            "|---|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(lines)


def update_readme(table: str) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        print("README has no benchmark markers; table not inserted", file=sys.stderr)
        return
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{START}\n{table}\n{END}{after}")


def main() -> int:
    size = "full" if "--full" in sys.argv[1:] else "quick"
    failed = run_scripts(size)
    update_readme(results_table())
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
