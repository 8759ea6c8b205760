"""ALS beyond one process: ``complete --method als`` locally against ``--backend dask`` on 1 and on 2 workers.

Workload: ``matcli generate completion`` (rank 10, unit-variance entries plus noise 0.1, uniform
sampling, 10% held out as test entries; quick: 40000 x 10000 with 1e6 observed ratings, full:
200000 x 50000 with 1e7). Every run fits rank 10 at reg 0.05 for a fixed number of sweeps
(``--rtol 0``) with the same seed, so all three do the same arithmetic: the distributed factors
equal the local ones bit for bit (checked here), and the test RMSE is printed side by side. The
clusters are a ``dask scheduler`` and ``dask worker --nthreads 1`` processes on 127.0.0.1
(tests/dask_cluster.py); both are started before timing and the three runs are interleaved. Peak
RSS of each worker process comes from ``client.run`` (``ru_maxrss``), the client's from its report.
Issue #19's row: ALS on a synthetic 1e7-rating set, local vs 2 workers. The machine may be shared: the
CPU seconds of the compute phase (client plus workers) are reported beside the wall times.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from _common import Row, report, run_matcli, size_from_argv, work_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dask_cluster import Cluster  # noqa: E402

MATCLI = [sys.executable, "-m", "matcli"]
#: (rows, cols, sampling rate, sweeps) per size: 1e6 and 1e7 observed ratings after the 10% test split.
SIZES = {"quick": (40_000, 10_000, 0.002778, 3), "full": (200_000, 50_000, 0.001111, 4)}


def generate(folder: Path, rows: int, cols: int, rate: float) -> Path:
    path = folder / f"ratings_{rows}x{cols}.h5"
    if not path.exists():
        subprocess.run([*MATCLI, "generate", "completion", "--rows", str(rows), "--cols", str(cols), "--rank", "10",
                        "--rate", str(rate), "--noise", "0.1", "--test-fraction", "0.1", "--seed", "1", "-o",
                        str(path), "-q"], check=True)
    return path


def fit(path: Path, folder: Path, name: str, sweeps: int, extra: list[str]) -> tuple[float, dict, dict]:
    out = folder / f"model_{name}.h5"
    seconds, rep = run_matcli(["complete", f"{path}:/observed", "--test", f"{path}:/test", "--method", "als",
                               "--rank", "10", "--reg", "0.05", "--validate", "0", "--maxiter", str(sweeps),
                               "--rtol", "0", "--seed", "1", "-o", str(out), "--force", *extra],
                              # measured on every size: the quick set is below the default threshold
                              {"MATCLI_DISTRIBUTED_ALS_MIN_ENTRIES": "0"})
    with h5py.File(out, "r") as fh:
        model = {key: fh[key][()] for key in ("U", "V", "row_bias", "col_bias") if key in fh}
    return seconds, rep, model


def worker_peak_mib(cluster: Cluster) -> list[float]:
    with cluster.client() as client:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return sorted(peaks.values())


def worker_cpu_s(cluster: Cluster | None) -> float:
    """CPU seconds the cluster's worker processes have used so far (0 without a cluster)."""
    if cluster is None:
        return 0.0

    def used() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with cluster.client() as client:
        return float(sum(client.run(used).values()))


def main() -> None:
    size = size_from_argv()
    rows, cols, rate, sweeps = SIZES[size]
    folder = work_dir("als_distributed")
    path = generate(folder, rows, cols, rate)
    repeat = 1
    times: dict[str, list[float]] = {"local": [], "dask1": [], "dask2": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    reports: dict[str, dict] = {}
    models: dict[str, dict] = {}
    with Cluster(folder / "cluster1", workers=1) as one, Cluster(folder / "cluster2", workers=2) as two:
        runs = {"local": ([], None), "dask1": (["--backend", "dask", "--scheduler", one.address], one),
                "dask2": (["--backend", "dask", "--scheduler", two.address], two)}
        for _ in range(repeat):
            for name, (extra, cluster) in runs.items():
                before = worker_cpu_s(cluster)
                seconds, reports[name], models[name] = fit(path, folder, name, sweeps, extra)
                times[name].append(seconds)
                # client CPU of the compute phase plus what the workers used meanwhile
                cpu[name].append(reports[name]["phases"]["compute"]["cpu_s"] + worker_cpu_s(cluster) - before)
        peaks = {"dask1": worker_peak_mib(one), "dask2": worker_peak_mib(two)}
    same = all(np.array_equal(models["local"][key], models[name][key]) for name in ("dask1", "dask2")
               for key in models["local"])
    observed = reports["local"]["problem"]["observed"]

    def accuracy(name: str) -> str:
        return f"test RMSE {reports[name]['metrics']['test_rmse']:.6f}"

    def extra(name: str) -> dict:
        rep = reports[name]
        out = {"seconds": times[name], "compute_s": rep["phases"]["compute"]["wall_s"],
               "compute_cpu_s_client_plus_workers": cpu[name],
               "client_compute_cpu_s": rep["phases"]["compute"]["cpu_s"],
               "client_peak_mib": rep["peak_memory_bytes"] / 2**20, "sweeps": rep["iterations"],
               "factors_equal_local_bitwise": same}
        if name in peaks:
            out.update(worker_peak_mib=peaks[name], blocks=rep["info"].get("blocks"))
        return out

    workload = f"ALS rank 10, {observed:.1e} ratings ({rows}x{cols}), {sweeps} sweeps"
    best = {name: min(values) for name, values in times.items()}
    rows_out = [
        Row(f"{workload}, 2 workers vs local", "matcli local (1 process)", best["local"], best["dask2"],
            accuracy("local"), accuracy("dask2"), target="issue #19 row", extra=extra("dask2") | {"peer": extra("local")}),
        Row(f"{workload}, 2 workers vs 1", "matcli on 1 dask worker", best["dask1"], best["dask2"], accuracy("dask1"),
            accuracy("dask2"), extra={"peer": extra("dask1")}),
    ]
    report("als_distributed", rows_out, size)
    print("compute CPU seconds (client + workers): " + ", ".join(f"{name} {min(cpu[name]):.1f}" for name in cpu))
    print(f"factors equal to the local run bit for bit: {same}; worker peak RSS MiB: 1 worker {peaks['dask1']}, "
          f"2 workers {peaks['dask2']}; client peak MiB: "
          + ", ".join(f"{name} {reports[name]['peak_memory_bytes'] / 2**20:.0f}" for name in reports))


if __name__ == "__main__":
    main()
