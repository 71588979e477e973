/* Exact 1-D W_p^p by a linear merge of two cumulative sums, fused with its analytic gradient.
 *
 * The CPU kernel behind losses.wasserstein_1d (backend "native"). It computes what
 * losses._MergedW1D computes with torch ops, in one pass per row instead of ~40 tensor ops:
 *
 *   U_i = cumsum(u)_i, V_j = cumsum(v)_j (accumulated in double and rounded to the input
 *   dtype, as torch.cumsum does on the CPU), merged by value with ties taken U before V, each in
 *   index order. The merged level q_m comes with the quantile lookups (a, b) = (i, #V emitted)
 *   for U_i and (#U emitted, j) for V_j, clipped to n - 1, and the cost c_m = |x_a - x_b|^p.
 *       W = sum_m (L(q_m) - L(q_{m-1})) c'_m,   q_{-1} = 0,
 *       dW/dq_m = L'(q_m) (c'_m - c'_{m+1}),    c'_{2n} = 0,
 *       dW/du_k = sum_{i >= k} dW/dU_i,  dW/dv_k = sum_{j >= k} dW/dV_j,
 *   with, by `cutoff`: CUTOFF_NONE: L(q) = q, c' = c; CUTOFF_DROP (the paper's): L(q) = q and
 *   c'_m = c_m [q_m <= 1], every interval ending above 1 costs nothing; CUTOFF_CLIP:
 *   L(q) = min(q, 1), L'(q) = [q <= 1], c' = c.
 *
 * Python signature (pointers to contiguous CPU memory, checked by the caller):
 *   wasserstein_1d(u, v, x, rows, n, p, cutoff, is_double, out, grad_u, grad_v, threads)
 *   cutoff: 0 none, 1 drop, 2 clip (losses._NO_CUTOFF, _CUTOFF_DROP, _CUTOFF_CLIP).
 *   u, v: (rows, n); x: (n,); out: (rows,); grad_u, grad_v: (rows, n) or 0 for "not needed".
 *   Rows are split over `threads` OpenMP threads (the GIL is released meanwhile). Built with
 *   -fopenmp, the module needs libgomp.so.1; imported after torch, which ships a libgomp.so.1 of
 *   its own, it shares torch's thread pool: a second pool would spin against torch's idle threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

enum { CUTOFF_NONE = 0, CUTOFF_DROP = 1, CUTOFF_CLIP = 2 };

typedef struct {
    const void *u, *v, *x;
    void *out, *grad_u, *grad_v;
    int64_t row_begin, row_end, n;
    double p;
    int cutoff, is_double, failed;
} Job;

#define SCALAR float
#define ROWS_FUNCTION rows_float
#include "sot_merge_rows.h"
#undef SCALAR
#undef ROWS_FUNCTION

#define SCALAR double
#define ROWS_FUNCTION rows_double
#include "sot_merge_rows.h"
#undef SCALAR
#undef ROWS_FUNCTION

static PyObject *py_wasserstein_1d(PyObject *self, PyObject *args) {
    unsigned long long u, v, x, out, grad_u, grad_v;
    long long rows, n;
    double p;
    int cutoff, is_double, threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKLLdipKKKi", &u, &v, &x, &rows, &n, &p, &cutoff, &is_double,
                          &out, &grad_u, &grad_v, &threads))
        return NULL;
    if (rows < 0 || n < 1 || !u || !v || !x || !out || cutoff < CUTOFF_NONE || cutoff > CUTOFF_CLIP) {
        PyErr_SetString(PyExc_ValueError,
                        "need rows >= 0, n >= 1, cutoff 0, 1 or 2 and non-null u, v, x, out");
        return NULL;
    }
    if (threads < 1) threads = 1;
    if ((long long)threads > rows) threads = rows > 0 ? (int)rows : 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int t = 0; t < threads; ++t) {
        Job job = {(const void *)(uintptr_t)u, (const void *)(uintptr_t)v,
                   (const void *)(uintptr_t)x, (void *)(uintptr_t)out,
                   (void *)(uintptr_t)grad_u, (void *)(uintptr_t)grad_v,
                   rows * t / threads, rows * (t + 1) / threads, n, p, cutoff, is_double, 0};
        if (is_double) rows_double(&job);
        else rows_float(&job);
        failed |= job.failed;
    }
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"wasserstein_1d", py_wasserstein_1d, METH_VARARGS,
     "W_p^p rows (and gradients) of contiguous CPU buffers; see csrc/sot_merge.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sot_merge",
                                    "Fused CPU merge kernel for losses.wasserstein_1d.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sot_merge(void) { return PyModule_Create(&module); }
