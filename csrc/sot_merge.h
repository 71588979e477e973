/* Exact 1-D W_p^p by a linear merge of two cumulative sums, fused with its analytic gradient.
 * Part of the _native_kernels module (native_kernels.c includes this file).
 *
 * The CPU kernel behind sotddsp.dsp.ot.wasserstein_1d (backend "native"). It computes what
 * ot._MergedW1D computes with torch ops, in one pass per row instead of ~40 tensor ops:
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
 *   cutoff: 0 none, 1 drop, 2 clip (ot._NO_CUTOFF, _CUTOFF_DROP, _CUTOFF_CLIP).
 *   u, v: (rows, n); x: (n,); out: (rows,); grad_u, grad_v: (rows, n) or 0 for "not needed".
 *   Rows are split over `threads` OpenMP threads (native_kernels.c's parallel_rows).
 */
enum { CUTOFF_NONE = 0, CUTOFF_DROP = 1, CUTOFF_CLIP = 2 };

typedef struct {
    const void *u, *v, *x;
    void *out, *grad_u, *grad_v;
    int64_t n;
    double p;
    int cutoff;
} MergeJob;

#define SCALAR float
#define ROWS_FUNCTION merge_rows_float
#include "sot_merge_rows.h"
#undef SCALAR
#undef ROWS_FUNCTION

#define SCALAR double
#define ROWS_FUNCTION merge_rows_double
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
    MergeJob job = {(const void *)(uintptr_t)u, (const void *)(uintptr_t)v,
                    (const void *)(uintptr_t)x, (void *)(uintptr_t)out,
                    (void *)(uintptr_t)grad_u, (void *)(uintptr_t)grad_v, n, p, cutoff};
    return parallel_rows(rows, threads, is_double ? merge_rows_double : merge_rows_float, &job);
}
