/* The optional CPU kernels of this project, one extension module `sotddsp.dsp._native_kernels`:
 *   wasserstein_1d(...)           sotddsp.dsp.ot.wasserstein_1d's merge kernel (sot_merge.h);
 *   synth_forward(...), synth_backward(...)   sotddsp.dsp.synth.HarmonicSynth's fused path
 *                                 (harmonic_synth.h).
 * Each call works on rows of contiguous CPU buffers, split over OpenMP threads with the GIL
 * released (parallel_rows). Built with -fopenmp, the module needs libgomp.so.1; imported after
 * torch, which ships a libgomp.so.1 of its own, it shares torch's thread pool: a second pool
 * would spin against torch's idle threads and lose the second core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Rows [begin, end) of one call; returns 1 when out of memory, else 0. */
typedef int (*RowsFunction)(const void *job, int64_t begin, int64_t end);

/* Runs rows_function over `rows` rows split into `threads` contiguous parts. */
static PyObject *parallel_rows(long long rows, int threads, RowsFunction rows_function,
                               const void *job) {
    if (threads < 1) threads = 1;
    if ((long long)threads > rows) threads = rows > 0 ? (int)rows : 1;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int t = 0; t < threads; ++t)
        failed |= rows_function(job, rows * t / threads, rows * (t + 1) / threads);
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

#include "sot_merge.h"
#include "harmonic_synth.h"

static PyMethodDef methods[] = {
    {"wasserstein_1d", py_wasserstein_1d, METH_VARARGS,
     "W_p^p rows (and gradients) of contiguous CPU buffers; see csrc/sot_merge.h."},
    {"synth_forward", py_synth_forward, METH_VARARGS,
     "Harmonic synth rows of contiguous CPU buffers; see csrc/harmonic_synth.h."},
    {"synth_backward", py_synth_backward, METH_VARARGS,
     "Gradients of the harmonic synth rows; see csrc/harmonic_synth.h."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sotddsp.dsp._native_kernels",
                                    "Fused CPU kernels of sotddsp/dsp/ot.py and sotddsp/dsp/synth.py.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_kernels(void) { return PyModule_Create(&module); }
