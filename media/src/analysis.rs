//! Signal comparison for tests: normalized cross-correlation with a lag search,
//! and RMS level.

/// Root-mean-square level of `samples` (same units as the samples; 0.0 if empty).
/// A full-scale sine has RMS ≈ 23170; silence 0.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// Best normalized cross-correlation between `a` and `b` over lags
/// `-max_lag..=max_lag`, and the lag where it occurs.
///
/// For a lag `L`, the overlap is every index `n` with `0 <= n < a.len()` and
/// `0 <= n + L < b.len()`, and
///
/// ```text
/// c(L) = Σ a[n]·b[n+L] / sqrt(Σ a[n]² · Σ b[n+L]²)      (sums over the overlap)
/// ```
///
/// i.e. the cosine similarity of the overlapping parts (no mean removal), in
/// `[-1, 1]`. A positive lag means `b` is *later* than `a`: if
/// `b[n + d] == a[n]` then the result is `(1.0, d)`. So pass what was sent as
/// `a` and what was received (decoded) as `b`, and the lag is the end-to-end delay
/// in samples.
///
/// Only lags whose overlap is at least half of the shorter input are
/// considered (so a few samples at the edges cannot produce a spurious 1.0); a
/// lag whose overlap is silent in either signal scores 0. The maximum is taken
/// on the signed value (an inverted signal scores -1, not 1); ties go to the
/// smallest `|lag|`, positive first. Returns `(0.0, 0)` if either input is empty or no lag
/// qualifies.
///
/// Interleaved stereo works when both inputs are interleaved the same way
/// (the lag is then in samples, twice the lag in sample frames).
///
/// Cost: every lag is evaluated exactly (up to float rounding) using one complex
/// FFT pair of size `next_pow2(max(len) + max_lag)`, plus prefix sums for the
/// energies — e.g. 5 s vs 5 s at 48 kHz with a 1 s lag range is one 2^19-point
/// transform pair.
pub fn normalized_cross_correlation(a: &[i16], b: &[i16], max_lag: usize) -> (f64, isize) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 0);
    }
    let (la, lb) = (a.len(), b.len());
    let min_overlap = (la.min(lb) / 2).max(1);
    // Lags with |L| > max(la, lb) have no overlap at all.
    let max_lag = max_lag.min(la.max(lb));
    let raw = cross_correlation_fft(a, b, max_lag);
    let pa = prefix_energy(a);
    let pb = prefix_energy(b);

    let mut best = (f64::NEG_INFINITY, 0isize);
    let max_lag_i = max_lag as isize;
    // Visit lags 0, 1, -1, 2, -2, ... so ties go to the smallest |lag|.
    let lags = (0..=2 * max_lag_i).map(|k| if k % 2 == 1 { (k + 1) / 2 } else { -k / 2 });
    for lag in lags {
        let lo = (-lag).max(0) as usize;
        let hi_signed = (la as isize).min(lb as isize - lag);
        if hi_signed <= lo as isize {
            continue;
        }
        let hi = hi_signed as usize;
        if hi - lo < min_overlap {
            continue;
        }
        let ea = (pa[hi] - pa[lo]) as f64;
        let b_lo = (lo as isize + lag) as usize;
        let b_hi = (hi as isize + lag) as usize;
        let eb = (pb[b_hi] - pb[b_lo]) as f64;
        let denom = (ea * eb).sqrt();
        let c = if denom > 0.0 {
            (raw(lag) / denom).clamp(-1.0, 1.0)
        } else {
            0.0
        };
        if c > best.0 {
            best = (c, lag);
        }
    }
    if best.0.is_finite() {
        best
    } else {
        (0.0, 0)
    }
}

/// `p[i] = Σ_{n<i} x[n]²`, exact in u64 (i16² < 2^30, so up to 2^34 samples).
fn prefix_energy(x: &[i16]) -> Vec<u64> {
    let mut p = Vec::with_capacity(x.len() + 1);
    let mut acc = 0u64;
    p.push(0);
    for &s in x {
        let v = i64::from(s);
        acc += (v * v) as u64;
        p.push(acc);
    }
    p
}

/// Returns a function `lag -> Σ_n a[n]·b[n+lag]` valid for `|lag| <= max_lag`.
fn cross_correlation_fft(a: &[i16], b: &[i16], max_lag: usize) -> impl Fn(isize) -> f64 {
    let n = (a.len().max(b.len()) + max_lag).next_power_of_two().max(2);
    // Pack both real signals into one complex transform: x = a + i·b.
    let mut x = vec![C::default(); n];
    for (i, &s) in a.iter().enumerate() {
        x[i].re = f64::from(s);
    }
    for (i, &s) in b.iter().enumerate() {
        x[i].im = f64::from(s);
    }
    let tw = twiddles(n);
    fft(&mut x, &tw, false);
    // A[k] = (X[k] + conj X[-k]) / 2, B[k] = (X[k] - conj X[-k]) / 2i;
    // R[k] = conj(A[k])·B[k] is the spectrum of the cross-correlation.
    let mut r = vec![C::default(); n];
    for k in 0..n {
        let xk = x[k];
        let xm = x[(n - k) % n].conj();
        let ak = C {
            re: (xk.re + xm.re) * 0.5,
            im: (xk.im + xm.im) * 0.5,
        };
        let d = C {
            re: (xk.re - xm.re) * 0.5,
            im: (xk.im - xm.im) * 0.5,
        };
        // d / i = -i·d
        let bk = C {
            re: d.im,
            im: -d.re,
        };
        r[k] = ak.conj().mul(bk);
    }
    fft(&mut r, &tw, true);
    let scale = 1.0 / n as f64;
    move |lag: isize| {
        let idx = lag.rem_euclid(n as isize) as usize;
        r[idx].re * scale
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn conj(self) -> C {
        C {
            re: self.re,
            im: -self.im,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// `e^{-2πik/n}` for `k < n/2`.
fn twiddles(n: usize) -> Vec<C> {
    (0..n / 2)
        .map(|k| {
            let ang = -std::f64::consts::TAU * k as f64 / n as f64;
            C {
                re: ang.cos(),
                im: ang.sin(),
            }
        })
        .collect()
}

/// In-place iterative radix-2 FFT (`x.len()` a power of two). `inverse` uses
/// the conjugate twiddles and does not scale.
fn fft(x: &mut [C], tw: &[C], inverse: bool) {
    let n = x.len();
    // Bit-reversal permutation.
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            x.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let mut w = tw[k * step];
                if inverse {
                    w = w.conj();
                }
                let u = x[start + k];
                let v = x[start + k + half].mul(w);
                x[start + k] = C {
                    re: u.re + v.re,
                    im: u.im + v.im,
                };
                x[start + k + half] = C {
                    re: u.re - v.re,
                    im: u.im - v.im,
                };
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{collect_all, Noise, SpeechLike};

    /// Direct O(n·lags) reference of the same definition.
    fn direct(a: &[i16], b: &[i16], max_lag: usize) -> (f64, isize) {
        let min_overlap = (a.len().min(b.len()) / 2).max(1);
        let mut best = (f64::NEG_INFINITY, 0);
        let m = max_lag as isize;
        for lag in (0..=2 * m).map(|k| if k % 2 == 1 { (k + 1) / 2 } else { -k / 2 }) {
            let (mut s, mut ea, mut eb, mut cnt) = (0.0, 0.0, 0.0, 0);
            for (n, &x) in a.iter().enumerate() {
                let m = n as isize + lag;
                if m < 0 || m >= b.len() as isize {
                    continue;
                }
                let y = f64::from(b[m as usize]);
                let x = f64::from(x);
                s += x * y;
                ea += x * x;
                eb += y * y;
                cnt += 1;
            }
            if cnt < min_overlap {
                continue;
            }
            let c = if ea * eb > 0.0 {
                s / (ea * eb).sqrt()
            } else {
                0.0
            };
            if c > best.0 {
                best = (c, lag);
            }
        }
        if best.0.is_finite() {
            best
        } else {
            (0.0, 0)
        }
    }

    #[test]
    fn rms_basics() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[3, -3, 3, -3]), 3.0);
        assert!((rms(&[i16::MIN]) - 32768.0).abs() < 1e-9);
    }

    #[test]
    fn finds_known_lag_both_directions() {
        let sig = collect_all(&mut SpeechLike::new(11).with_frames(50));
        for d in [0usize, 1, 37, 1234, 4800] {
            // b is a delayed by d: leading zeros.
            let mut b = vec![0i16; d];
            b.extend_from_slice(&sig);
            let (c, lag) = normalized_cross_correlation(&sig, &b, 5000);
            assert!(c > 0.999, "d {d} c {c}");
            assert_eq!(lag, d as isize);
            // And the other way round: a is later than b.
            let (c, lag) = normalized_cross_correlation(&b, &sig, 5000);
            assert!(c > 0.999, "d {d} c {c}");
            assert_eq!(lag, -(d as isize));
        }
    }

    #[test]
    fn five_seconds_with_one_second_search() {
        // The size the end-to-end tests use: 5 s sent vs 5.5 s received, delay 0.7 s.
        let sent = collect_all(&mut SpeechLike::new(21).with_frames(250));
        let mut received = vec![0i16; 33_600];
        received.extend_from_slice(&sent);
        received.extend(collect_all(&mut Noise::new(9, 300).with_frames(25)));
        let (c, lag) = normalized_cross_correlation(&sent, &received, 48_000);
        assert!(c > 0.99, "c {c}");
        assert_eq!(lag, 33_600);
    }

    #[test]
    fn independent_noise_is_near_zero() {
        let a = collect_all(&mut Noise::new(1, 10_000).with_frames(50));
        let b = collect_all(&mut Noise::new(2, 10_000).with_frames(50));
        let (c, _) = normalized_cross_correlation(&a, &b, 4800);
        // Max over 9601 lags of ~N(0, 1/48000): a few sigma, well under 0.05.
        assert!(c.abs() < 0.05, "c {c}");
    }

    #[test]
    fn matches_direct_computation() {
        // Speech alone is nearly periodic (pitch), so mix in noise to make the
        // true lag the unambiguous peak.
        let mut a = collect_all(&mut SpeechLike::new(3).with_frames(4));
        for (s, n) in a
            .iter_mut()
            .zip(collect_all(&mut Noise::new(5, 4000).with_frames(4)))
        {
            *s = s.saturating_add(n);
        }
        let mut b = collect_all(&mut Noise::new(4, 3000).with_frames(3));
        for (i, s) in b.iter_mut().enumerate() {
            *s = s.saturating_add(a[(i + 100) % a.len()] / 2);
        }
        let fast = normalized_cross_correlation(&a, &b, 300);
        let slow = direct(&a, &b, 300);
        assert_eq!(fast.1, slow.1);
        assert!((fast.0 - slow.0).abs() < 1e-9, "{fast:?} {slow:?}");
        assert_eq!(fast.1, -100);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(normalized_cross_correlation(&[], &[1, 2], 10), (0.0, 0));
        assert_eq!(
            normalized_cross_correlation(&[0; 100], &[0; 100], 10),
            (0.0, 0)
        );
        let (c, lag) = normalized_cross_correlation(&[5], &[5], 1000);
        assert!((c - 1.0).abs() < 1e-12 && lag == 0);
        let inv: Vec<i16> = [1i16, -2, 3, -4].iter().map(|x| -x).collect();
        let (c, _) = normalized_cross_correlation(&[1, -2, 3, -4], &inv, 0);
        assert!((c + 1.0).abs() < 1e-12);
    }
}
