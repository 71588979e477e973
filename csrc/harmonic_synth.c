/* The harmonic synthesizer of models/synth.py on the CPU, fused: upsampling, audio-rate Nyquist
 * mask and oscillator bank in one pass per row, forward and backward.
 *
 * Per row (one example): frame controls A (T, K) (already masked at frame rate) and f0 (T,) Hz;
 * N = T * hop output samples; n = t * hop + j. In double precision:
 *   f[n]   = linear interpolation of f0, as F.interpolate(mode="linear", align_corners=False):
 *            s = (n + 0.5) T / N - 0.5 clamped at 0, i0 = floor(s), i1 = min(i0 + 1, T - 1),
 *            f[n] = (1 - l) f0[i0] + l f0[i1], l = s - i0;
 *   phi[n] = sum_{m <= n} 2 pi f[m] / sr;
 *   a_k[n] = A[t, k] w[hop + j] + A[t + 1, k] w[j]   (w: periodic Hann of 2 hop, A[T] = A[T - 1]);
 *   m_k[n] = [k f[n] < sr / 2];
 *   y[n]   = sum_k m_k[n] a_k[n] sin(k phi[n]),
 * with sin(k phi), cos(k phi) from sin(phi), cos(phi) by the rotation recurrence.
 * Backward, from g = dL/dy:
 *   dL/dA[t, k] += g[n] m_k s_k w[hop + j],   dL/dA[min(t + 1, T - 1), k] += g[n] m_k s_k w[j],
 *   dL/dphi[n]   = g[n] sum_k k m_k a_k cos(k phi),
 *   dL/df[n]     = (2 pi / sr) sum_{m >= n} dL/dphi[m],
 *   dL/df0[i]   += the interpolation weights' transpose of dL/df.
 *
 * Python signatures (pointers to contiguous CPU memory, checked by the caller):
 *   forward(A, f0, out, rows, T, K, N, sample_rate, is_double, threads)
 *   backward(A, f0, grad_out, grad_A, grad_f0, rows, T, K, N, sample_rate, is_double, threads)
 *   grad_A or grad_f0 may be 0 ("not needed"). Rows are split over `threads` OpenMP threads
 *   (torch's own OpenMP runtime, see sot_merge.c); the GIL is released meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static const double PI = 3.14159265358979323846;

typedef struct {
    const void *amplitudes, *f0, *grad_out;
    void *out, *grad_amplitudes, *grad_f0;
    int64_t row_begin, row_end, n_frames, n_harmonics, n_samples;
    double sample_rate;
    int failed;
} Job;

/* F.interpolate(mode="linear", align_corners=False) from n_frames to n_samples: sample n reads
 * frames i0 and i1 with weights 1 - l and l. */
typedef struct {
    int64_t i0, i1;
    double l;
} Lerp;

static inline Lerp interpolation(int64_t n, double scale, int64_t n_frames) {
    double position = ((double)n + 0.5) * scale - 0.5;
    if (position < 0.0) position = 0.0;
    int64_t i0 = (int64_t)position;
    if (i0 > n_frames - 1) i0 = n_frames - 1;
    const Lerp lerp = {i0, i0 < n_frames - 1 ? i0 + 1 : i0, position - (double)i0};
    return lerp;
}

#define SCALAR float
#define ROWS_FUNCTION synth_rows_float
#include "harmonic_synth_rows.h"
#undef SCALAR
#undef ROWS_FUNCTION

#define SCALAR double
#define ROWS_FUNCTION synth_rows_double
#include "harmonic_synth_rows.h"
#undef SCALAR
#undef ROWS_FUNCTION

static PyObject *run(long long rows, int threads, Job *prototype, int is_double) {
    if (threads < 1) threads = 1;
    if ((long long)threads > rows) threads = rows > 0 ? (int)rows : 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int t = 0; t < threads; ++t) {
        Job job = *prototype;
        job.row_begin = rows * t / threads;
        job.row_end = rows * (t + 1) / threads;
        job.failed = 0;
        if (is_double) synth_rows_double(&job);
        else synth_rows_float(&job);
        failed |= job.failed;
    }
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static int check_sizes(long long rows, long long n_frames, long long n_harmonics,
                       long long n_samples, double sample_rate) {
    if (rows < 0 || n_frames < 1 || n_harmonics < 1 || n_samples < 1 ||
        n_samples % n_frames != 0 || !(sample_rate > 0)) {
        PyErr_SetString(PyExc_ValueError,
                        "need rows >= 0, T, K, N >= 1, N a multiple of T, sample_rate > 0");
        return 0;
    }
    return 1;
}

static PyObject *py_forward(PyObject *self, PyObject *args) {
    unsigned long long amplitudes, f0, out;
    long long rows, n_frames, n_harmonics, n_samples;
    double sample_rate;
    int is_double, threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKLLLLdpi", &amplitudes, &f0, &out, &rows, &n_frames,
                          &n_harmonics, &n_samples, &sample_rate, &is_double, &threads))
        return NULL;
    if (!check_sizes(rows, n_frames, n_harmonics, n_samples, sample_rate)) return NULL;
    Job job = {(const void *)(uintptr_t)amplitudes, (const void *)(uintptr_t)f0, NULL,
               (void *)(uintptr_t)out, NULL, NULL, 0, 0, n_frames, n_harmonics, n_samples,
               sample_rate, 0};
    return run(rows, threads, &job, is_double);
}

static PyObject *py_backward(PyObject *self, PyObject *args) {
    unsigned long long amplitudes, f0, grad_out, grad_amplitudes, grad_f0;
    long long rows, n_frames, n_harmonics, n_samples;
    double sample_rate;
    int is_double, threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKKKLLLLdpi", &amplitudes, &f0, &grad_out, &grad_amplitudes,
                          &grad_f0, &rows, &n_frames, &n_harmonics, &n_samples, &sample_rate,
                          &is_double, &threads))
        return NULL;
    if (!check_sizes(rows, n_frames, n_harmonics, n_samples, sample_rate)) return NULL;
    Job job = {(const void *)(uintptr_t)amplitudes, (const void *)(uintptr_t)f0,
               (const void *)(uintptr_t)grad_out, NULL, (void *)(uintptr_t)grad_amplitudes,
               (void *)(uintptr_t)grad_f0, 0, 0, n_frames, n_harmonics, n_samples,
               sample_rate, 0};
    return run(rows, threads, &job, is_double);
}

static PyMethodDef methods[] = {
    {"forward", py_forward, METH_VARARGS,
     "Harmonic synth rows of contiguous CPU buffers; see csrc/harmonic_synth.c."},
    {"backward", py_backward, METH_VARARGS,
     "Gradients of the harmonic synth rows; see csrc/harmonic_synth.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_harmonic_synth",
                                    "Fused CPU kernel of models.synth.HarmonicSynth.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__harmonic_synth(void) { return PyModule_Create(&module); }
