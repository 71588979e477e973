/* One row loop of the harmonic synth kernel, for the scalar type SCALAR; included once per type
 * by harmonic_synth.h, which defines SCALAR and ROWS_FUNCTION before each include. See
 * harmonic_synth.h for the equations. Forward when job->grad_out is NULL, else backward.
 * Returns 1 when out of memory, else 0. */

static int ROWS_FUNCTION(const void *context, int64_t row_begin, int64_t row_end) {
    const SynthJob *job = (const SynthJob *)context;
    typedef SCALAR T;
    const int64_t n_frames = job->n_frames, n_harmonics = job->n_harmonics;
    const int64_t n_samples = job->n_samples, hop = n_samples / n_frames;
    const double nyquist = job->sample_rate / 2.0;
    const double omega = 2.0 * PI / job->sample_rate;
    const double scale = (double)n_frames / (double)n_samples;
    const int backward = job->grad_out != NULL;
    /* Per row: f and (backward) dL/dphi for every sample, dL/df0 per frame; per block: the
     * oscillators' sin/cos of phi and of k phi, and the block's sums (y: the output forward,
     * dL/dphi backward). The window is shared by all blocks. */
    double *f = (double *)malloc(sizeof(double) * (size_t)n_samples);
    double *dphi = (double *)malloc(sizeof(double) * (size_t)n_samples);
    double *frame_grad = (double *)malloc(sizeof(double) * (size_t)n_frames);
    double *window = (double *)malloc(sizeof(double) * (size_t)(2 * hop));
    double *s1 = (double *)malloc(sizeof(double) * (size_t)hop);
    double *c1 = (double *)malloc(sizeof(double) * (size_t)hop);
    double *s = (double *)malloc(sizeof(double) * (size_t)hop);
    double *c = (double *)malloc(sizeof(double) * (size_t)hop);
    double *y = (double *)malloc(sizeof(double) * (size_t)hop);
    int failed = 0;
    if (!f || !dphi || !frame_grad || !window || !s1 || !c1 || !s || !c || !y) {
        failed = 1;
        goto done;
    }
    for (int64_t i = 0; i < 2 * hop; ++i) {
        const double v = sin(PI * (double)i / (double)(2 * hop));
        window[i] = v * v;
    }
    const double *rise = window, *fall = window + hop;

    for (int64_t row = row_begin; row < row_end; ++row) {
        const T *amplitudes = (const T *)job->amplitudes + row * n_frames * n_harmonics;
        const T *f0 = (const T *)job->f0 + row * n_frames;
        const T *g = backward ? (const T *)job->grad_out + row * n_samples : NULL;
        T *grad_a = backward && job->grad_amplitudes
                        ? (T *)job->grad_amplitudes + row * n_frames * n_harmonics : NULL;
        for (int64_t n = 0; n < n_samples; ++n) {
            const Lerp lerp = interpolation(n, scale, n_frames);
            f[n] = (1.0 - lerp.l) * (double)f0[lerp.i0] + lerp.l * (double)f0[lerp.i1];
        }
        double phase = 0.0;
        for (int64_t t = 0; t < n_frames; ++t) {
            const int64_t start = t * hop;
            const int64_t next = t + 1 < n_frames ? t + 1 : t;
            const T *a_now = amplitudes + t * n_harmonics;
            const T *a_next = amplitudes + next * n_harmonics;
            double lowest = f[start];
            for (int64_t j = 0; j < hop; ++j) {
                phase += omega * f[start + j];
                s1[j] = sin(phase);
                c1[j] = cos(phase);
                s[j] = s1[j];
                c[j] = c1[j];
                y[j] = 0.0;
                if (f[start + j] < lowest) lowest = f[start + j];
            }
            /* Harmonics silent in the whole block (k f >= Nyquist at every sample) are skipped. */
            int64_t audible = n_harmonics;
            while (audible > 0 && lowest > 0.0 && (double)audible * lowest >= nyquist) --audible;
            for (int64_t k = 1; k <= audible; ++k) {
                if (k > 1) {
#pragma omp simd
                    for (int64_t j = 0; j < hop; ++j) {
                        const double sk = s[j] * c1[j] + c[j] * s1[j];
                        c[j] = c[j] * c1[j] - s[j] * s1[j];
                        s[j] = sk;
                    }
                }
                const double now = (double)a_now[k - 1], later = (double)a_next[k - 1];
                const double kd = (double)k;
                if (!backward) {
#pragma omp simd
                    for (int64_t j = 0; j < hop; ++j) {
                        const double a = now * fall[j] + later * rise[j];
                        y[j] += kd * f[start + j] < nyquist ? a * s[j] : 0.0;
                    }
                    continue;
                }
                double grad_now = 0.0, grad_later = 0.0;
#pragma omp simd reduction(+ : grad_now, grad_later)
                for (int64_t j = 0; j < hop; ++j) {
                    const double gate = kd * f[start + j] < nyquist ? (double)g[start + j] : 0.0;
                    const double gs = gate * s[j];
                    grad_now += gs * fall[j];
                    grad_later += gs * rise[j];
                    y[j] += gate * kd * (now * fall[j] + later * rise[j]) * c[j];
                }
                if (grad_a) {
                    grad_a[t * n_harmonics + k - 1] += (T)grad_now;
                    grad_a[next * n_harmonics + k - 1] += (T)grad_later;
                }
            }
            if (!backward) {
                T *out = (T *)job->out + row * n_samples + start;
                for (int64_t j = 0; j < hop; ++j) out[j] = (T)y[j];
            } else {
                for (int64_t j = 0; j < hop; ++j) dphi[start + j] = y[j];
            }
        }
        if (backward && job->grad_f0) {
            double suffix = 0.0;
            for (int64_t n = n_samples - 1; n >= 0; --n) {
                suffix += dphi[n];
                dphi[n] = omega * suffix; /* dL/df[n] */
            }
            for (int64_t i = 0; i < n_frames; ++i) frame_grad[i] = 0.0;
            for (int64_t n = 0; n < n_samples; ++n) {
                const Lerp lerp = interpolation(n, scale, n_frames);
                frame_grad[lerp.i0] += (1.0 - lerp.l) * dphi[n];
                frame_grad[lerp.i1] += lerp.l * dphi[n];
            }
            T *grad_f0 = (T *)job->grad_f0 + row * n_frames;
            for (int64_t i = 0; i < n_frames; ++i) grad_f0[i] = (T)frame_grad[i];
        }
    }
done:
    free(f), free(dphi), free(frame_grad), free(window);
    free(s1), free(c1), free(s), free(c), free(y);
    return failed;
}
