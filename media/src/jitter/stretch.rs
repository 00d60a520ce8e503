//! Time compression for [`Operation::Accelerate`](super::decision::Operation::Accelerate).
//!
//! Two consecutive decoded frames `a` and `b` become one frame of the same
//! length as `a` by a raised-cosine cross-fade: the output starts as `a` and
//! ends as `b`, so 20 ms of delay disappears without a discontinuity. (NetEQ
//! removes whole pitch periods instead, which is cleaner on voiced speech; a
//! pitch-synchronous version is future work.)

/// Cross-fade `a` into `b` (interleaved, `channels` channels) and append the
/// result, `a.len()` samples long, to `out`. Any part of `b` beyond `a.len()`
/// is appended after it; a `b` shorter than `a` fades into silence.
pub(crate) fn crossfade_into(a: &[i16], b: &[i16], channels: usize, out: &mut Vec<i16>) {
    let channels = channels.max(1);
    let frames = a.len() / channels;
    for (i, &x) in a.iter().enumerate() {
        let n = i / channels;
        let w = if frames > 1 {
            let phase = std::f32::consts::PI * n as f32 / (frames - 1) as f32;
            0.5 - 0.5 * phase.cos()
        } else {
            1.0
        };
        let y = f32::from(b.get(i).copied().unwrap_or(0));
        let v = f32::from(x) * (1.0 - w) + y * w;
        out.push(v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16);
    }
    if b.len() > a.len() {
        out.extend_from_slice(&b[a.len()..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_as_a_ends_as_b() {
        let a = vec![1000i16; 960];
        let b = vec![-1000i16; 960];
        let mut out = Vec::new();
        crossfade_into(&a, &b, 1, &mut out);
        assert_eq!(out.len(), 960);
        assert_eq!(out[0], 1000);
        assert_eq!(out[959], -1000);
        assert!(out.windows(2).all(|w| w[1] <= w[0]), "monotonic fade");
    }

    #[test]
    fn stereo_and_extremes() {
        let a = vec![i16::MAX; 8];
        let b = vec![i16::MIN; 10];
        let mut out = Vec::new();
        crossfade_into(&a, &b, 2, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(out[0], i16::MAX);
        assert_eq!(out[1], i16::MAX, "both channels of frame 0");
        assert_eq!(out[7], i16::MIN);
    }
}
