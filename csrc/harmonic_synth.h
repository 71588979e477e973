/* The harmonic synthesizer of sotddsp/dsp/synth.py on the CPU, fused: upsampling, audio-rate Nyquist
 * mask and oscillator bank in one pass per row, forward and backward. Part of the
 * _native_kernels module (native_kernels.c includes this file).
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
 *   synth_forward(A, f0, out, rows, T, K, N, sample_rate, is_double, threads)
 *   synth_backward(A, f0, grad_out, grad_A, grad_f0, rows, T, K, N, sample_rate, is_double,
 *                  threads)
 *   grad_A or grad_f0 may be 0 ("not needed"). Rows are split over `threads` OpenMP threads
 *   (native_kernels.c's parallel_rows).
 */
static const double PI = 3.14159265358979323846;

typedef struct {
    const void *amplitudes, *f0, *grad_out;
    void *out, *grad_amplitudes, *grad_f0;
    int64_t n_frames, n_harmonics, n_samples;
    double sample_rate;
} SynthJob;

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

static PyObject *py_synth_forward(PyObject *self, PyObject *args) {
    unsigned long long amplitudes, f0, out;
    long long rows, n_frames, n_harmonics, n_samples;
    double sample_rate;
    int is_double, threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKLLLLdpi", &amplitudes, &f0, &out, &rows, &n_frames,
                          &n_harmonics, &n_samples, &sample_rate, &is_double, &threads))
        return NULL;
    if (!check_sizes(rows, n_frames, n_harmonics, n_samples, sample_rate)) return NULL;
    SynthJob job = {(const void *)(uintptr_t)amplitudes, (const void *)(uintptr_t)f0, NULL,
                    (void *)(uintptr_t)out, NULL, NULL, n_frames, n_harmonics, n_samples,
                    sample_rate};
    return parallel_rows(rows, threads, is_double ? synth_rows_double : synth_rows_float, &job);
}

static PyObject *py_synth_backward(PyObject *self, PyObject *args) {
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
    SynthJob job = {(const void *)(uintptr_t)amplitudes, (const void *)(uintptr_t)f0,
                    (const void *)(uintptr_t)grad_out, NULL, (void *)(uintptr_t)grad_amplitudes,
                    (void *)(uintptr_t)grad_f0, n_frames, n_harmonics, n_samples, sample_rate};
    return parallel_rows(rows, threads, is_double ? synth_rows_double : synth_rows_float, &job);
}
