"""numpy's BLAS on one thread, for the `imgarc` command and its worker processes (not applied
when imgarc is a library: the caller owns its process's threads).

The integer h_s is float64 matrix products (exact: integers below 2^53 in any summation order),
which numpy hands to OpenBLAS, and OpenBLAS starts a thread per core for each product. Photos
are already coded side by side, one per core, and every network runs on one thread per call:
two photos' products then ran four busy-waiting OpenBLAS threads on two cores. With one BLAS
thread, Kodak's compress took 6.6 s instead of 8.0 s on 2 cores (whole process, two runs each).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> None:
    threadpool_limits(limits=1, user_api="blas")
