/* One row loop of the merge kernel, for the scalar type SCALAR; included once per type by
 * sot_merge.h, which defines SCALAR and ROWS_FUNCTION (the function's name) before each include.
 * See sot_merge.h for the equations. Returns 1 when out of memory, else 0. */

static int ROWS_FUNCTION(const void *context, int64_t row_begin, int64_t row_end) {
    const MergeJob *job = (const MergeJob *)context;
    typedef SCALAR T;
    const int64_t n = job->n;
    const T *x = (const T *)job->x;
    const int cutoff = job->cutoff;
    const int square = job->p == 2.0;
    const double p = job->p;
    const int with_grad = job->grad_u != NULL || job->grad_v != NULL;
    /* Scratch for one row: both levels, the merged costs (2n + 1, the last one 0) and the merged
     * position of every level. */
    T *cu = (T *)malloc(sizeof(T) * (size_t)n);
    T *cv = (T *)malloc(sizeof(T) * (size_t)n);
    T *cost = (T *)malloc(sizeof(T) * (size_t)(2 * n + 1));
    int64_t *pos_u = (int64_t *)malloc(sizeof(int64_t) * (size_t)n);
    int64_t *pos_v = (int64_t *)malloc(sizeof(int64_t) * (size_t)n);
    if (!cu || !cv || !cost || !pos_u || !pos_v) {
        free(cu), free(cv), free(cost), free(pos_u), free(pos_v);
        return 1;
    }
#define LEVEL_COST(d) (square ? (d) * (d) : (T)pow(fabs((double)(d)), p))
    /* L(level) and the cost c' of the interval ending at a level (see sot_merge.h). */
#define CLAMP(level) ((cutoff == CUTOFF_CLIP && (level) > (T)1) ? (T)1 : (level))
#define KEPT_COST(level, d) ((cutoff == CUTOFF_DROP && (level) > (T)1) ? (T)0 : LEVEL_COST(d))
    for (int64_t row = row_begin; row < row_end; ++row) {
        const T *u = (const T *)job->u + row * n;
        const T *v = (const T *)job->v + row * n;
        double acc_u = 0.0, acc_v = 0.0;
        for (int64_t k = 0; k < n; ++k) {
            acc_u += (double)u[k];
            acc_v += (double)v[k];
            cu[k] = (T)acc_u;
            cv[k] = (T)acc_v;
        }
        int64_t i = 0, j = 0, m = 0;
        T previous = 0;
        double w = 0.0;
        /* Both distributions have levels left: the lookups are (i, j) whichever level is next.
         * The positions of both are written; the later write, when a level is taken, stands. */
        while (i < n && j < n) {
            const T d = x[i] - x[j];
            T level;
            if (cv[j] < cu[i]) {
                level = cv[j];
                pos_v[j++] = m;
            } else {
                level = cu[i];
                pos_u[i++] = m;
            }
            const T c = KEPT_COST(level, d);
            const T clamped = CLAMP(level);
            w += (double)(clamped - previous) * (double)c;
            previous = clamped;
            cost[m++] = c;
        }
        /* One side is exhausted: the other's lookup is past its last level, i.e. its last bin
         * (|x_k - x_{n-1}|^p for the side that is left, whichever it is). */
        const int u_left = i < n;
        const T *left_levels = u_left ? cu : cv;
        int64_t *left_pos = u_left ? pos_u : pos_v;
        for (int64_t k = u_left ? i : j; k < n; ++k, ++m) {
            const T d = x[k] - x[n - 1];
            const T c = KEPT_COST(left_levels[k], d);
            const T clamped = CLAMP(left_levels[k]);
            w += (double)(clamped - previous) * (double)c;
            previous = clamped;
            cost[m] = c;
            left_pos[k] = m;
        }
        ((T *)job->out)[row] = (T)w;
        if (!with_grad) continue;
        cost[2 * n] = 0;
        /* dW/dq at a level is c'_m - c'_{m+1} (0 above 1 when clipping); dW/du_k sums it over
         * i >= k, and likewise for v. */
        T *grads[2] = {(T *)job->grad_u, (T *)job->grad_v};
        const T *levels[2] = {cu, cv};
        const int64_t *positions[2] = {pos_u, pos_v};
        for (int side = 0; side < 2; ++side) {
            if (grads[side] == NULL) continue;
            T *grad = grads[side] + row * n;
            double suffix = 0.0;
            for (int64_t k = n - 1; k >= 0; --k) {
                const T slope = cost[positions[side][k]] - cost[positions[side][k] + 1];
                suffix += (cutoff == CUTOFF_CLIP && levels[side][k] > (T)1) ? 0.0 : (double)slope;
                grad[k] = (T)suffix;
            }
        }
    }
#undef LEVEL_COST
#undef CLAMP
#undef KEPT_COST
    free(cu), free(cv), free(cost), free(pos_u), free(pos_v);
    return 0;
}
