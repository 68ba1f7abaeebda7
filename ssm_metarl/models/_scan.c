/* The reset-aware diagonal linear scan of ssm_metarl.models.scan, as one C loop per call.

   out_t = a_t * out_{t-1} + b_t  (forward, from out_{-1} = h0)
   out_t = a_t * out_{t+1} + b_t  (reverse, from out_T = h0)

   Every array is (B, T, N) or (B, N) with arbitrary element strides (a stride may be 0: a broadcast
   coefficient); h0 may be NULL (zeros). Complex arrays are passed as their real views: element n of a row
   is (x[n * sn], x[n * sn + 1]) with strides counted in reals. Compiled on first use by native.py with the
   system C compiler; the Python kernels of scan.py compute the same values and are the oracle in tests.
   The gated layer's recurrence with its coefficients (rglru_*, at the end) is fused here too. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Vector variants of exp and expm1 (glibc's libmvec, x86-64, glibc >= 2.35 for expm1), so that the gated
   kernels' loops vectorise with their transcendental functions; native.py compiles with -fopenmp-simd
   -fno-math-errno (and -mavx2 -mfma where the CPU has them). Elsewhere the loops call the scalar functions. */
#if defined(__x86_64__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float expm1f(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double expm1(double);
#endif

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

/* The gated recurrence of ssm_metarl.models.gated_ssm (Griffin's RG-LRU) with its coefficients, in one pass.

   p holds the layer's projection (B, T, 3N) = [u; r; i] (element stride 1 within a row), d the per-channel
   decay rate c * softplus(-lambda) (N,), reset a (B, T) bool mask (NULL: none), h0 (B, N) (NULL: zeros):

   a_t = exp(-sigmoid(r_t) * d)                 x_t = sqrt(1 - a_t^2) * sigmoid(i_t) * u_t
   h_t = a_t * (1 - reset_t) * h_{t-1} + x_t    out (B, T, N) contiguous

   sqrt(1 - a^2) is computed as sqrt(-expm1(2 log a)), exact near a = 1, as the Python reference does.
   zero holds N zeros (the previous row at a reset, or of a missing h0). The inner loops have no branches,
   so that the compiler vectorises them (with the functions declared above). */
#define RGLRU_FORWARD(NAME, REAL, EXP, EXPM1, SQRT)                                                    \
    void NAME(int64_t B, int64_t T, int64_t N, const REAL *p, int64_t psb, int64_t pst, const REAL *d, \
              const uint8_t *reset, int64_t rsb, int64_t rst, const REAL *h0, int64_t hsb, REAL *out,    \
              const REAL *zero) {                                                                      \
        for (int64_t i = 0; i < B; i++) {                                                              \
            for (int64_t t = 0; t < T; t++) {                                                          \
                const REAL *restrict u = p + i * psb + t * pst, *restrict r = u + N, *restrict g = u + 2 * N; \
                REAL *restrict ot = out + (i * T + t) * N;                                             \
                const REAL *restrict prev = t > 0 ? ot - N : (h0 ? h0 + i * hsb : zero);              \
                if (reset && reset[i * rsb + t * rst]) prev = zero;                                    \
                _Pragma("GCC ivdep") for (int64_t n = 0; n < N; n++) {                                 \
                    REAL sr = 1 / (1 + EXP(-r[n])), si = 1 / (1 + EXP(-g[n]));                         \
                    REAL log_a = -sr * d[n];                                                           \
                    ot[n] = EXP(log_a) * prev[n] + SQRT(-EXPM1(2 * log_a)) * si * u[n];                \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

/* Its adjoint, recomputing the coefficients from p. With g_t = dL/dh_t (element stride 1 within a row),
   a_eff_t = a_t (1 - reset_t) and delta_t = g_t + a_eff_{t+1} delta_{t+1}:

   dL/du = delta s si        dL/di = delta s u si (1 - si)        (s = sqrt(1 - a^2))
   dL/dlog_a = delta (1 - reset_t) h_{t-1} a - delta si u a^2 / s
   dL/dr = -dL/dlog_a d sr (1 - sr)        dL/dd = sum over (B, T) of -dL/dlog_a sr
   dL/dh0 = a_eff_0 delta_0

   dp (B, T, 3N) and gh0 (B, N) are contiguous outputs (gh0 NULL: not wanted), dd (N,) is zeroed here, and
   scratch holds 2N reals (the next step's delta and a_eff). h is the forward's output. */
#define RGLRU_BACKWARD(NAME, REAL, EXP, EXPM1, SQRT)                                                   \
    void NAME(int64_t B, int64_t T, int64_t N, const REAL *p, int64_t psb, int64_t pst, const REAL *d, \
              const uint8_t *reset, int64_t rsb, int64_t rst, const REAL *h0, int64_t hsb, const REAL *h, \
              const REAL *g, int64_t gsb, int64_t gst, REAL *dp, REAL *dd, REAL *gh0, REAL *scratch,     \
              const REAL *zero) {                                                                      \
        REAL *restrict dnext = scratch, *restrict anext = scratch + N, *restrict ddr = dd;             \
        for (int64_t n = 0; n < N; n++) ddr[n] = 0;                                                    \
        for (int64_t i = 0; i < B; i++) {                                                              \
            for (int64_t n = 0; n < N; n++) dnext[n] = anext[n] = 0;                                   \
            for (int64_t t = T - 1; t >= 0; t--) {                                                     \
                const REAL *restrict u = p + i * psb + t * pst, *restrict r = u + N, *restrict gi = u + 2 * N; \
                const REAL *restrict gt = g + i * gsb + t * gst;                                       \
                REAL *restrict du = dp + (i * T + t) * 3 * N, *restrict dr = du + N, *restrict di = du + 2 * N; \
                REAL keep = (reset && reset[i * rsb + t * rst]) ? 0 : 1;                               \
                const REAL *restrict prev = !keep ? zero : t > 0 ? h + (i * T + t - 1) * N : (h0 ? h0 + i * hsb : zero); \
                _Pragma("GCC ivdep") for (int64_t n = 0; n < N; n++) {                                 \
                    REAL sr = 1 / (1 + EXP(-r[n])), si = 1 / (1 + EXP(-gi[n]));                        \
                    REAL log_a = -sr * d[n], a = EXP(log_a), s = SQRT(-EXPM1(2 * log_a));              \
                    REAL delta = gt[n] + anext[n] * dnext[n];                                          \
                    REAL dsu = delta * si * u[n];                                                      \
                    REAL dlog_a = a * (delta * prev[n] - dsu * a / s);                          \
                    du[n] = delta * s * si;                                                            \
                    di[n] = dsu * s * (1 - si);                                                        \
                    dr[n] = -dlog_a * d[n] * sr * (1 - sr);                                            \
                    ddr[n] -= dlog_a * sr;                                                             \
                    dnext[n] = delta;                                                                  \
                    anext[n] = keep * a;                                                               \
                }                                                                                      \
            }                                                                                          \
            if (gh0)                                                                                   \
                for (int64_t n = 0; n < N; n++) gh0[i * N + n] = anext[n] * dnext[n];                  \
        }                                                                                              \
    }

RGLRU_FORWARD(rglru_float32, float, expf, expm1f, sqrtf)
RGLRU_FORWARD(rglru_float64, double, exp, expm1, sqrt)
RGLRU_BACKWARD(rglru_backward_float32, float, expf, expm1f, sqrtf)
RGLRU_BACKWARD(rglru_backward_float64, double, exp, expm1, sqrt)

/* The gated block's elementwise tail (gated_fused.py), forward and adjoint, over R rows of H features, every
   tensor contiguous, each one pass where torch takes two or three operations:

   skip_silu:  y = silu(a + skip * v)          a (R, H) the recurrence's output projection, v (R, H) its input
   glu_res:    z = x + m[:, :H] sigmoid(m[:, H:])    x (R, H) the block's input, m (R, 2H) the mixing projection

   With t = a + skip v and s = sigmoid(t): dL/dt = g s (1 + t (1 - s)) = dL/da, dL/dv = dL/dt skip (added to
   dv), dL/dskip = sum over rows of dL/dt v (dskip zeroed here). With s = sigmoid(m_b): dL/dm_a = g s,
   dL/dm_b = g m_a s (1 - s); dL/dx = g needs no kernel. */
#define BLOCK_TAIL(SUFFIX, REAL, EXP)                                                                  \
    void skip_silu_##SUFFIX(int64_t R, int64_t H, const REAL *a, const REAL *v, const REAL *skip, REAL *y) { \
        for (int64_t i = 0; i < R; i++) {                                                              \
            const REAL *ai = a + i * H, *vi = v + i * H;                                               \
            REAL *yi = y + i * H;                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < H; k++) {                                      \
                REAL t = ai[k] + skip[k] * vi[k];                                                      \
                yi[k] = t / (1 + EXP(-t));                                                             \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    void skip_silu_backward_##SUFFIX(int64_t R, int64_t H, const REAL *a, const REAL *v, const REAL *skip, \
                                     const REAL *g, REAL *da, REAL *dv, REAL *dskip) {                 \
        for (int64_t k = 0; k < H; k++) dskip[k] = 0;                                                  \
        for (int64_t i = 0; i < R; i++) {                                                              \
            const REAL *ai = a + i * H, *vi = v + i * H, *gi = g + i * H;                              \
            REAL *dai = da + i * H, *dvi = dv + i * H;                                                 \
            _Pragma("omp simd") for (int64_t k = 0; k < H; k++) {                                      \
                REAL t = ai[k] + skip[k] * vi[k], s = 1 / (1 + EXP(-t));                               \
                REAL dt = gi[k] * s * (1 + t * (1 - s));                                               \
                dai[k] = dt;                                                                           \
                dvi[k] += dt * skip[k];                                                                \
                dskip[k] += dt * vi[k];                                                                \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    void glu_res_##SUFFIX(int64_t R, int64_t H, const REAL *x, const REAL *m, REAL *z) {              \
        for (int64_t i = 0; i < R; i++) {                                                              \
            const REAL *xi = x + i * H, *mi = m + i * 2 * H;                                           \
            REAL *zi = z + i * H;                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < H; k++) zi[k] = xi[k] + mi[k] / (1 + EXP(-mi[H + k])); \
        }                                                                                              \
    }                                                                                                  \
    void glu_res_backward_##SUFFIX(int64_t R, int64_t H, const REAL *m, const REAL *g, REAL *dm) {    \
        for (int64_t i = 0; i < R; i++) {                                                              \
            const REAL *mi = m + i * 2 * H, *gi = g + i * H;                                           \
            REAL *dmi = dm + i * 2 * H;                                                                \
            _Pragma("omp simd") for (int64_t k = 0; k < H; k++) {                                      \
                REAL s = 1 / (1 + EXP(-mi[H + k]));                                                    \
                dmi[k] = gi[k] * s;                                                                    \
                dmi[H + k] = gi[k] * mi[k] * s * (1 - s);                                              \
            }                                                                                          \
        }                                                                                              \
    }

BLOCK_TAIL(float32, float, expf)
BLOCK_TAIL(float64, double, exp)

/* One acting step of a whole GatedSSM (gated_ssm.py), for B rows, in one call with no autograd:

   z = W_enc x + b_enc;  for each of the L blocks:  v = LayerNorm(z);  with K > 1 taps v = conv(v): v_k =
   b_conv[k] + W_conv[k, K-1] v_k + sum_j<K-1 W_conv[k, j] buf[j, k], buf the last K - 1 inputs (zeros after a
   reset), shifted by one with v appended;  p = W_proj v + b_proj = [u; r; i];
   h = a (1 - reset) h_prev + sqrt(1 - a^2) sigmoid(i) u,  a = exp(-sigmoid(r) c softplus(-lambda));
   y = W_out h + b_out + skip * v;  m = W_mix SiLU(y) + b_mix;  z = z + m[:H] * sigmoid(m[H:]);
   out = LayerNorm(z).

   w holds the parameters as the modules store them (nn.Linear weights (out, in), contiguous), in order:
   encoder weight, bias; per block norm weight, bias, proj weight, bias, lambda, out weight, bias, skip, mix
   weight, bias, with K > 1 the convolution's weight (H, K) and bias; the final norm's weight and bias. eps
   holds the L + 1 norms' epsilons. state_in and state_out hold L pointers to (B, S) rows, S = N + (K - 1) H
   with a convolution (h, then the K - 1 buffered inputs, oldest first), else N; reset (B,) may be NULL (a
   reset row reads zeros for its state, as the torch step's masked_fill does). Returns nonzero when out of
   memory. */
/* y (B, O) = x (B, I) W^T + b for W (O, I) as nn.Linear stores it (b NULL: none). Blocks of two rows by four
   outputs share their loads, and the sums over k vectorise (omp simd reduction). */
#define LINEAR(NAME, REAL)                                                                             \
    static inline void NAME##_block(int64_t I, int64_t O, int64_t rows, const REAL *x, const REAL *W,  \
                                    const REAL *b, REAL *y) {                                          \
        const REAL *x0 = x, *x1 = rows > 1 ? x + I : x;                                                \
        int64_t o = 0;                                                                                 \
        for (; o + 4 <= O; o += 4) {                                                                   \
            const REAL *w0 = W + o * I, *w1 = w0 + I, *w2 = w1 + I, *w3 = w2 + I;                      \
            REAL a0 = 0, a1 = 0, a2 = 0, a3 = 0, c0 = 0, c1 = 0, c2 = 0, c3 = 0;                       \
            _Pragma("omp simd reduction(+:a0,a1,a2,a3,c0,c1,c2,c3)") for (int64_t k = 0; k < I; k++) { \
                a0 += w0[k] * x0[k];                                                                   \
                a1 += w1[k] * x0[k];                                                                   \
                a2 += w2[k] * x0[k];                                                                   \
                a3 += w3[k] * x0[k];                                                                   \
                c0 += w0[k] * x1[k];                                                                   \
                c1 += w1[k] * x1[k];                                                                   \
                c2 += w2[k] * x1[k];                                                                   \
                c3 += w3[k] * x1[k];                                                                   \
            }                                                                                          \
            REAL b0 = b ? b[o] : 0, b1 = b ? b[o + 1] : 0, b2 = b ? b[o + 2] : 0, b3 = b ? b[o + 3] : 0; \
            y[o] = a0 + b0, y[o + 1] = a1 + b1, y[o + 2] = a2 + b2, y[o + 3] = a3 + b3;                \
            if (rows > 1) y[O + o] = c0 + b0, y[O + o + 1] = c1 + b1, y[O + o + 2] = c2 + b2, y[O + o + 3] = c3 + b3; \
        }                                                                                              \
        for (; o < O; o++)                                                                             \
            for (int64_t r = 0; r < rows; r++) {                                                       \
                const REAL *wo = W + o * I, *xr = x + r * I;                                           \
                REAL acc = 0;                                                                          \
                _Pragma("omp simd reduction(+:acc)") for (int64_t k = 0; k < I; k++) acc += wo[k] * xr[k]; \
                y[r * O + o] = b ? acc + b[o] : acc;                                                   \
            }                                                                                          \
    }                                                                                                  \
    static void NAME(int64_t B, int64_t I, int64_t O, const REAL *x, const REAL *W, const REAL *b,      \
                     REAL *y) {                                                                        \
        for (int64_t i = 0; i < B; i += 2) NAME##_block(I, O, B - i > 1 ? 2 : 1, x + i * I, W, b, y + i * O); \
    }

#define LAYER_NORM(NAME, REAL, SQRT)                                                                   \
    static void NAME(int64_t B, int64_t H, const REAL *x, const REAL *w, const REAL *b, REAL eps, REAL *y) { \
        for (int64_t i = 0; i < B; i++) {                                                              \
            const REAL *xi = x + i * H;                                                                \
            REAL mean = 0, var = 0;                                                                    \
            _Pragma("omp simd reduction(+:mean)") for (int64_t k = 0; k < H; k++) mean += xi[k];      \
            mean /= H;                                                                                 \
            _Pragma("omp simd reduction(+:var)") for (int64_t k = 0; k < H; k++) var += (xi[k] - mean) * (xi[k] - mean); \
            REAL rstd = 1 / SQRT(var / H + eps);                                                       \
            REAL *yi = y + i * H;                                                                      \
            _Pragma("omp simd") for (int64_t k = 0; k < H; k++) yi[k] = (xi[k] - mean) * rstd * w[k] + b[k]; \
        }                                                                                              \
    }

#define GATED_STEP(NAME, REAL, LINEAR_FN, NORM_FN, EXP, EXPM1, SQRT, LOG1P)                            \
    int NAME(int64_t B, int64_t D, int64_t H, int64_t N, int64_t L, double c, int64_t K, const REAL *x, \
             const uint8_t *reset, const REAL *const *w, const double *eps, const REAL *const *state_in,   \
             REAL *const *state_out, REAL *out) {                                                      \
        int64_t S = K > 1 ? N + (K - 1) * H : N, P = K > 1 ? 12 : 10;                                  \
        REAL *buf = calloc(B * (5 * H + 4 * N) + 2 * N, sizeof(REAL));                                \
        if (!buf) return 1;                                                                            \
        REAL *z = buf, *v = z + B * H, *p = v + B * H, *y = p + B * 3 * N, *m = y + B * H, *hs = m + B * 2 * H; \
        REAL *d = hs + B * N;                                                                          \
        const REAL *zero = d + N; /* a reset reads zeros, whatever the state held (inf or NaN included) */ \
        LINEAR_FN(B, D, H, x, w[0], w[1], z);                                                          \
        for (int64_t l = 0; l < L; l++) {                                                              \
            const REAL *const *q = w + 2 + P * l;                                                      \
            NORM_FN(B, H, z, q[0], q[1], (REAL)eps[l], v);                                                   \
            if (K > 1)                                                                                 \
                for (int64_t i = 0; i < B; i++) { /* the convolution, in place; its buffer shifted */   \
                    const REAL *old = state_in[l] + i * S + N, *cw = q[10], *cb = q[11];               \
                    REAL *nb = state_out[l] + i * S + N, *vi = v + i * H;                              \
                    int r = reset && reset[i];                                                         \
                    for (int64_t k = 0; k < H; k++) {                                                  \
                        REAL acc = cb[k] + cw[k * K + K - 1] * vi[k];                                  \
                        if (!r)                                                                        \
                            for (int64_t j = 0; j < K - 1; j++) acc += cw[k * K + j] * old[j * H + k]; \
                        for (int64_t j = 0; j + 2 < K; j++) nb[j * H + k] = r ? 0 : old[(j + 1) * H + k]; \
                        nb[(K - 2) * H + k] = vi[k];                                                   \
                        vi[k] = acc;                                                                   \
                    }                                                                                  \
                }                                                                                      \
            LINEAR_FN(B, H, 3 * N, v, q[2], q[3], p);                                                  \
            for (int64_t n = 0; n < N; n++) {  /* c softplus(-lambda), torch's threshold 20 */          \
                REAL x_ = -q[4][n];                                                                    \
                d[n] = (REAL)c * (x_ > 20 ? x_ : LOG1P(EXP(x_)));                                            \
            }                                                                                          \
            for (int64_t i = 0; i < B; i++) {                                                          \
                const REAL *u = p + i * 3 * N, *r = u + N, *g = u + 2 * N;                             \
                const REAL *hp = (reset && reset[i]) ? zero : state_in[l] + i * S;                     \
                REAL *hn = hs + i * N, *so = state_out[l] + i * S;                                     \
                _Pragma("GCC ivdep") for (int64_t n = 0; n < N; n++) {                                 \
                    REAL sr = 1 / (1 + EXP(-r[n])), si = 1 / (1 + EXP(-g[n]));                         \
                    REAL log_a = -sr * d[n];                                                           \
                    hn[n] = EXP(log_a) * hp[n] + SQRT(-EXPM1(2 * log_a)) * si * u[n];                  \
                }                                                                                      \
                for (int64_t n = 0; n < N; n++) so[n] = hn[n];                                         \
            }                                                                                          \
            LINEAR_FN(B, N, H, hs, q[5], q[6], y);                                                     \
            for (int64_t i = 0; i < B; i++) {                                                          \
                REAL *yi = y + i * H;                                                                  \
                const REAL *vi = v + i * H, *skip = q[7];                                              \
                _Pragma("omp simd") for (int64_t k = 0; k < H; k++) {                                  \
                    REAL t = yi[k] + skip[k] * vi[k];                                                  \
                    yi[k] = t / (1 + EXP(-t));                                                         \
                }                                                                                      \
            }                                                                                          \
            LINEAR_FN(B, H, 2 * H, y, q[8], q[9], m);                                                  \
            for (int64_t i = 0; i < B; i++) {                                                          \
                REAL *zi = z + i * H;                                                                  \
                const REAL *mi = m + i * 2 * H;                                                        \
                _Pragma("omp simd") for (int64_t k = 0; k < H; k++) zi[k] += mi[k] / (1 + EXP(-mi[H + k])); \
            }                                                                                          \
        }                                                                                              \
        NORM_FN(B, H, z, w[2 + P * L], w[3 + P * L], (REAL)eps[L], out);                                   \
        free(buf);                                                                                     \
        return 0;                                                                                      \
    }

/* One acting step of a whole SSM (ssm.py, real or complex), from its acting plan, in one call with no autograd:

   z = W_enc x + b_enc;  for each of the L blocks:  v = LayerNorm(z);  [u; Dv] = W_ind v  (W_ind = [gamma B;
   diag(D)], complex rows interleaved (re, im), plus a zero row when complex with H odd);
   h = lambda (1 - reset) h_prev + u  (complex: interleaved);  y = W_out h + Dv  (W_out (H, N2): C, or
   [C_re, -C_im] interleaved, so y = Re(C h) + D v);  m = W_mix SiLU(y) + b_mix;  z = z + GLU(m) (or m);
   out = LayerNorm(z).

   w holds, in order: encoder weight, bias; per block norm weight, bias, lambda (N, or N x 2 reals), W_ind,
   W_out, mix weight, bias; the final norm's weight and bias; all contiguous. States are (B, N) real or
   (B, N) complex as interleaved reals. Returns nonzero when out of memory. */
#define LRU_STEP(NAME, REAL, LINEAR_FN, NORM_FN, EXP)                                                  \
    int NAME(int64_t B, int64_t D, int64_t H, int64_t N, int64_t L, int cplx, int glu, const REAL *x,   \
             const uint8_t *reset, const REAL *const *w, const double *eps, const REAL *const *state_in, \
             REAL *const *state_out, REAL *out) {                                                      \
        int64_t N2 = cplx ? 2 * N : N, R = N2 + H + (cplx && H % 2 ? 1 : 0), O = glu ? 2 * H : H;      \
        REAL *buf = calloc(B * (3 * H + R + O) + N2, sizeof(REAL));                                    \
        if (!buf) return 1;                                                                            \
        REAL *z = buf, *v = z + B * H, *ud = v + B * H, *y = ud + B * R, *m = y + B * H;               \
        const REAL *zero = m + B * O; /* a reset reads zeros, whatever the state held */               \
        LINEAR_FN(B, D, H, x, w[0], w[1], z);                                                          \
        for (int64_t l = 0; l < L; l++) {                                                              \
            const REAL *const *q = w + 2 + 7 * l, *lam = q[2];                                         \
            NORM_FN(B, H, z, q[0], q[1], (REAL)eps[l], v);                                             \
            LINEAR_FN(B, H, R, v, q[3], 0, ud);                                                        \
            for (int64_t i = 0; i < B; i++) {                                                          \
                const REAL *u = ud + i * R, *hp = (reset && reset[i]) ? zero : state_in[l] + i * N2;   \
                REAL *hn = state_out[l] + i * N2;                                                      \
                if (cplx)                                                                              \
                    for (int64_t n = 0; n < N; n++) {                                                  \
                        REAL pr = hp[2 * n], pi = hp[2 * n + 1];                                       \
                        hn[2 * n] = lam[2 * n] * pr - lam[2 * n + 1] * pi + u[2 * n];                  \
                        hn[2 * n + 1] = lam[2 * n] * pi + lam[2 * n + 1] * pr + u[2 * n + 1];          \
                    }                                                                                  \
                else                                                                                   \
                    for (int64_t n = 0; n < N; n++) hn[n] = lam[n] * hp[n] + u[n];                     \
            }                                                                                          \
            LINEAR_FN(B, N2, H, state_out[l], q[4], 0, y);                                             \
            for (int64_t i = 0; i < B; i++)                                                            \
                for (int64_t k = 0; k < H; k++) {                                                      \
                    REAL t = y[i * H + k] + ud[i * R + N2 + k];                                        \
                    y[i * H + k] = t / (1 + EXP(-t));                                                  \
                }                                                                                      \
            LINEAR_FN(B, H, O, y, q[5], q[6], m);                                                      \
            for (int64_t i = 0; i < B; i++)                                                            \
                for (int64_t k = 0; k < H; k++)                                                        \
                    z[i * H + k] += glu ? m[i * O + k] / (1 + EXP(-m[i * O + H + k])) : m[i * O + k];  \
        }                                                                                              \
        NORM_FN(B, H, z, w[2 + 7 * L], w[3 + 7 * L], (REAL)eps[L], out);                               \
        free(buf);                                                                                     \
        return 0;                                                                                      \
    }

/* The gated ssm's causal depthwise convolution over time with resets (gated_ssm.CausalConv), B rows of T steps
   of H features, K taps, wt (K, H) the taps transposed (row K-1 the current input's):

   out[b,t] = bias + sum_{k < K, k <= since[b,t]} wt[K-1-k] * x(b, t-k),  x(b, s) = v[b,s] (s >= 0), buf[b, K-1+s]
   (s < 0),

   since (B, T) the steps since the row's episode started (K or more where every tap reads the same episode).
   The new buffer (B, K-1, H) holds x(b, T-K+1+j) for j < K-1, zeros before keep_from[b] (the time of the row's
   last reset in the segment; -K where none). The backward accumulates into zeroed dv, dbuf, dwt, dbias
   from g = dL/dout and gnb = dL/dnewbuf (NULL: none). All tensors contiguous. */
#define CONV(NAME, REAL)                                                                               \
    static inline const REAL *NAME##_x(const REAL *v, const REAL *buf, int64_t b, int64_t s, int64_t T, \
                                       int64_t H, int64_t K) {                                         \
        return s >= 0 ? v + (b * T + s) * H : buf + (b * (K - 1) + K - 1 + s) * H;                      \
    }                                                                                                  \
    void NAME(int64_t B, int64_t T, int64_t H, int64_t K, const REAL *v, const REAL *buf, const REAL *wt, \
              const REAL *bias, const int64_t *since, const int64_t *keep_from, REAL *out, REAL *newbuf) { \
        for (int64_t b = 0; b < B; b++) {                                                              \
            for (int64_t t = 0; t < T; t++) {                                                          \
                REAL *o = out + (b * T + t) * H;                                                       \
                const REAL *x = v + (b * T + t) * H, *w = wt + (K - 1) * H;                            \
                _Pragma("omp simd") for (int64_t h = 0; h < H; h++) o[h] = bias[h] + w[h] * x[h];      \
                for (int64_t k = 1; k < K && k <= since[b * T + t]; k++) {                             \
                    x = NAME##_x(v, buf, b, t - k, T, H, K), w = wt + (K - 1 - k) * H;                 \
                    _Pragma("omp simd") for (int64_t h = 0; h < H; h++) o[h] += w[h] * x[h];           \
                }                                                                                      \
            }                                                                                          \
            for (int64_t j = 0; j < K - 1; j++) {                                                      \
                int64_t s = T - K + 1 + j;                                                             \
                REAL *nb = newbuf + (b * (K - 1) + j) * H;                                             \
                const REAL *x = NAME##_x(v, buf, b, s, T, H, K);                                       \
                for (int64_t h = 0; h < H; h++) nb[h] = s >= keep_from[b] ? x[h] : 0;                  \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
    void NAME##_backward(int64_t B, int64_t T, int64_t H, int64_t K, const REAL *v, const REAL *buf,    \
                         const REAL *wt, const int64_t *since, const int64_t *keep_from, const REAL *g,   \
                         const REAL *gnb, REAL *dv, REAL *dbuf, REAL *dwt, REAL *dbias) {              \
        for (int64_t b = 0; b < B; b++) {                                                              \
            for (int64_t t = 0; t < T; t++) {                                                          \
                const REAL *gt = g + (b * T + t) * H;                                                  \
                _Pragma("omp simd") for (int64_t h = 0; h < H; h++) dbias[h] += gt[h];                 \
                for (int64_t k = 0; k < K && k <= since[b * T + t]; k++) {                             \
                    const REAL *x = NAME##_x(v, buf, b, t - k, T, H, K), *w = wt + (K - 1 - k) * H;    \
                    REAL *dx = (REAL *)NAME##_x(dv, dbuf, b, t - k, T, H, K), *dw = dwt + (K - 1 - k) * H; \
                    _Pragma("omp simd") for (int64_t h = 0; h < H; h++) {                              \
                        dw[h] += gt[h] * x[h];                                                         \
                        dx[h] += gt[h] * w[h];                                                         \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
            if (gnb)                                                                                   \
                for (int64_t j = 0; j < K - 1; j++) {                                                  \
                    int64_t s = T - K + 1 + j;                                                         \
                    if (s < keep_from[b]) continue;                                                    \
                    const REAL *gj = gnb + (b * (K - 1) + j) * H;                                      \
                    REAL *dx = (REAL *)NAME##_x(dv, dbuf, b, s, T, H, K);                              \
                    for (int64_t h = 0; h < H; h++) dx[h] += gj[h];                                    \
                }                                                                                      \
        }                                                                                              \
    }

CONV(conv_float32, float)
CONV(conv_float64, double)
LINEAR(linear_float32, float)
LINEAR(linear_float64, double)
LAYER_NORM(layer_norm_float32, float, sqrtf)
LAYER_NORM(layer_norm_float64, double, sqrt)
GATED_STEP(gated_step_float32, float, linear_float32, layer_norm_float32, expf, expm1f, sqrtf, log1pf)
GATED_STEP(gated_step_float64, double, linear_float64, layer_norm_float64, exp, expm1, sqrt, log1p)
LRU_STEP(lru_step_float32, float, linear_float32, layer_norm_float32, expf)
LRU_STEP(lru_step_float64, double, linear_float64, layer_norm_float64, exp)
