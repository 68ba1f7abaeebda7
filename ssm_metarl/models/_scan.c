/* The reset-aware diagonal linear scan of ssm_metarl.models.scan, as one C loop per call.

   out_t = a_t * out_{t-1} + b_t  (forward, from out_{-1} = h0)
   out_t = a_t * out_{t+1} + b_t  (reverse, from out_T = h0)

   Every array is (B, T, N) or (B, N) with arbitrary element strides (a stride may be 0: a broadcast
   coefficient); h0 may be NULL (zeros). Complex arrays are passed as their real views: element n of a row
   is (x[n * sn], x[n * sn + 1]) with strides counted in reals. Compiled on first use by native.py with the
   system C compiler; the Python kernels of scan.py compute the same values and are the oracle in tests. */
#include <stdint.h>

/* One row of N elements: o = a * p + b, or o = b where there is no previous row (p NULL, h0 absent). */
#define REAL_ROW(NAME, REAL)                                                                           \
    static inline void NAME(int64_t N, REAL *o, int64_t osn, const REAL *a, int64_t asn, const REAL *p, \
                            int64_t psn, const REAL *b, int64_t bsn) {                                 \
        if (!p) {                                                                                      \
            for (int64_t n = 0; n < N; n++) o[n * osn] = b[n * bsn];                                   \
        } else if (asn == 1 && bsn == 1 && osn == 1 && psn == 1) {                                     \
            for (int64_t n = 0; n < N; n++) o[n] = a[n] * p[n] + b[n];                                 \
        } else if (asn == 0 && bsn == 1 && osn == 1 && psn == 1) {                                     \
            REAL c = a[0];                                                                             \
            for (int64_t n = 0; n < N; n++) o[n] = c * p[n] + b[n];                                    \
        } else {                                                                                       \
            for (int64_t n = 0; n < N; n++) o[n * osn] = a[n * asn] * p[n * psn] + b[n * bsn];         \
        }                                                                                              \
    }

#define COMPLEX_ROW(NAME, REAL)                                                                        \
    static inline void NAME(int64_t N, REAL *o, int64_t osn, const REAL *a, int64_t asn, const REAL *p, \
                            int64_t psn, const REAL *b, int64_t bsn) {                                 \
        for (int64_t n = 0; n < N; n++) {                                                              \
            REAL re = b[n * bsn], im = b[n * bsn + 1];                                                 \
            if (p) {                                                                                   \
                REAL ar = a[n * asn], ai = a[n * asn + 1], pr = p[n * psn], pi = p[n * psn + 1];       \
                re += ar * pr - ai * pi;                                                               \
                im += ar * pi + ai * pr;                                                               \
            }                                                                                          \
            o[n * osn] = re;                                                                           \
            o[n * osn + 1] = im;                                                                       \
        }                                                                                              \
    }

/* The scan over (B, T): each step's previous row is the output's previous row, or h0 at the first step. */
#define SCAN(NAME, REAL, ROW)                                                                          \
    void NAME(int64_t B, int64_t T, int64_t N, const REAL *a, int64_t asb, int64_t ast, int64_t asn,   \
              const REAL *b, int64_t bsb, int64_t bst, int64_t bsn, const REAL *h0, int64_t hsb,        \
              int64_t hsn, REAL *out, int64_t osb, int64_t ost, int64_t osn, int reverse) {             \
        for (int64_t i = 0; i < B; i++) {                                                              \
            for (int64_t k = 0; k < T; k++) {                                                          \
                int64_t t = reverse ? T - 1 - k : k;                                                   \
                REAL *ot = out + i * osb + t * ost;                                                    \
                const REAL *prev = k > 0 ? ot + (reverse ? ost : -ost) : (h0 ? h0 + i * hsb : 0);      \
                ROW(N, ot, osn, a + i * asb + t * ast, asn, prev, k > 0 ? osn : hsn, b + i * bsb + t * bst, \
                    bsn);                                                                              \
            }                                                                                          \
        }                                                                                              \
    }

REAL_ROW(row_float32, float)
REAL_ROW(row_float64, double)
COMPLEX_ROW(row_complex64, float)
COMPLEX_ROW(row_complex128, double)
SCAN(scan_float32, float, row_float32)
SCAN(scan_float64, double, row_float64)
SCAN(scan_complex64, float, row_complex64)
SCAN(scan_complex128, double, row_complex128)

/* The adjoint of the forward scan above (scan.py, "_LinearScan"), in one pass per batch row:

   delta_t = g_t + conj(a_{t+1}) * delta_{t+1},  delta_{T-1} = g_{T-1}   (a: the reset-folded coefficient)
   grad_h0 = conj(a_0) * delta_0                                         (if gh0 is not NULL)
   grad_a_t = keep_t * delta_t * conj(h_{t-1}),  h_{-1} = h0 or 0       (keep NULL: all ones)

   grad_a is written in full (B, T, N) when ga_mode is 2, summed over (B, T) into (N,) when ga_mode is 1,
   and not computed when ga_mode is 0. delta, ga and gh0 are contiguous outputs; a may be strided. */
#define REAL_SCAN_BACKWARD(NAME, REAL)                                                                 \
    void NAME(int64_t B, int64_t T, int64_t N, const REAL *a, int64_t asb, int64_t ast, int64_t asn,   \
              const REAL *g, int64_t gsb, int64_t gst, int64_t gsn, const REAL *h, int64_t hsb,         \
              int64_t hst, int64_t hsn, const REAL *h0, int64_t h0sb, int64_t h0sn, const REAL *keep,   \
              int64_t ksb, int64_t kst, REAL *delta, REAL *ga, int ga_mode, REAL *gh0) {                \
        if (ga_mode == 1)                                                                              \
            for (int64_t n = 0; n < N; n++) ga[n] = 0;                                                 \
        for (int64_t i = 0; i < B; i++) {                                                              \
            for (int64_t t = T - 1; t >= 0; t--) {                                                     \
                const REAL *gt = g + i * gsb + t * gst;                                                \
                REAL *dt = delta + (i * T + t) * N;                                                    \
                if (t == T - 1) {                                                                      \
                    for (int64_t n = 0; n < N; n++) dt[n] = gt[n * gsn];                               \
                } else {                                                                               \
                    const REAL *an = a + i * asb + (t + 1) * ast;                                      \
                    for (int64_t n = 0; n < N; n++) dt[n] = gt[n * gsn] + an[n * asn] * dt[n + N];     \
                }                                                                                      \
                if (ga_mode == 0) continue;                                                            \
                REAL k = keep ? keep[i * ksb + t * kst] : (REAL)1;                                     \
                const REAL *hp = t > 0 ? h + i * hsb + (t - 1) * hst : (h0 ? h0 + i * h0sb : 0);       \
                int64_t psn = t > 0 ? hsn : h0sn;                                                      \
                REAL *gat = ga_mode == 2 ? ga + (i * T + t) * N : ga;                                  \
                for (int64_t n = 0; n < N; n++) {                                                      \
                    REAL v = (hp && k != 0) ? k * dt[n] * hp[n * psn] : (REAL)0;                       \
                    if (ga_mode == 2) gat[n] = v; else gat[n] += v;                                    \
                }                                                                                      \
            }                                                                                          \
            if (gh0) {                                                                                 \
                const REAL *a0 = a + i * asb;                                                          \
                for (int64_t n = 0; n < N; n++) gh0[i * N + n] = a0[n * asn] * delta[i * T * N + n];   \
            }                                                                                          \
        }                                                                                              \
    }

/* Complex version: element n is (x[2n'], x[2n' + 1]) with strides in reals; contiguous outputs interleave
   (re, im). conj(a) * d = (ar dr + ai di, ar di - ai dr); d * conj(p) = (dr pr + di pi, di pr - dr pi). */
#define COMPLEX_SCAN_BACKWARD(NAME, REAL)                                                              \
    void NAME(int64_t B, int64_t T, int64_t N, const REAL *a, int64_t asb, int64_t ast, int64_t asn,   \
              const REAL *g, int64_t gsb, int64_t gst, int64_t gsn, const REAL *h, int64_t hsb,         \
              int64_t hst, int64_t hsn, const REAL *h0, int64_t h0sb, int64_t h0sn, const REAL *keep,   \
              int64_t ksb, int64_t kst, REAL *delta, REAL *ga, int ga_mode, REAL *gh0) {                \
        if (ga_mode == 1)                                                                              \
            for (int64_t n = 0; n < 2 * N; n++) ga[n] = 0;                                             \
        for (int64_t i = 0; i < B; i++) {                                                              \
            for (int64_t t = T - 1; t >= 0; t--) {                                                     \
                const REAL *gt = g + i * gsb + t * gst;                                                \
                REAL *dt = delta + (i * T + t) * 2 * N;                                                \
                if (t == T - 1) {                                                                      \
                    for (int64_t n = 0; n < N; n++) {                                                  \
                        dt[2 * n] = gt[n * gsn];                                                       \
                        dt[2 * n + 1] = gt[n * gsn + 1];                                               \
                    }                                                                                  \
                } else {                                                                               \
                    const REAL *an = a + i * asb + (t + 1) * ast;                                      \
                    const REAL *dn = dt + 2 * N;                                                       \
                    for (int64_t n = 0; n < N; n++) {                                                  \
                        REAL ar = an[n * asn], ai = an[n * asn + 1];                                   \
                        REAL dr = dn[2 * n], di = dn[2 * n + 1];                                       \
                        dt[2 * n] = gt[n * gsn] + ar * dr + ai * di;                                   \
                        dt[2 * n + 1] = gt[n * gsn + 1] + ar * di - ai * dr;                           \
                    }                                                                                  \
                }                                                                                      \
                if (ga_mode == 0) continue;                                                            \
                REAL k = keep ? keep[i * ksb + t * kst] : (REAL)1;                                     \
                const REAL *hp = t > 0 ? h + i * hsb + (t - 1) * hst : (h0 ? h0 + i * h0sb : 0);       \
                int64_t psn = t > 0 ? hsn : h0sn;                                                      \
                REAL *gat = ga_mode == 2 ? ga + (i * T + t) * 2 * N : ga;                              \
                for (int64_t n = 0; n < N; n++) {                                                      \
                    REAL vr = 0, vi = 0;                                                               \
                    if (hp && k != 0) {                                                                \
                        REAL dr = dt[2 * n], di = dt[2 * n + 1];                                       \
                        REAL pr = hp[n * psn], pi = hp[n * psn + 1];                                   \
                        vr = k * (dr * pr + di * pi);                                                  \
                        vi = k * (di * pr - dr * pi);                                                  \
                    }                                                                                  \
                    if (ga_mode == 2) {                                                                \
                        gat[2 * n] = vr;                                                               \
                        gat[2 * n + 1] = vi;                                                           \
                    } else {                                                                           \
                        gat[2 * n] += vr;                                                              \
                        gat[2 * n + 1] += vi;                                                          \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
            if (gh0) {                                                                                 \
                const REAL *a0 = a + i * asb;                                                          \
                const REAL *d0 = delta + i * T * 2 * N;                                                \
                for (int64_t n = 0; n < N; n++) {                                                      \
                    REAL ar = a0[n * asn], ai = a0[n * asn + 1], dr = d0[2 * n], di = d0[2 * n + 1];   \
                    gh0[i * 2 * N + 2 * n] = ar * dr + ai * di;                                        \
                    gh0[i * 2 * N + 2 * n + 1] = ar * di - ai * dr;                                    \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

REAL_SCAN_BACKWARD(scan_backward_float32, float)
REAL_SCAN_BACKWARD(scan_backward_float64, double)
COMPLEX_SCAN_BACKWARD(scan_backward_complex64, float)
COMPLEX_SCAN_BACKWARD(scan_backward_complex128, double)
