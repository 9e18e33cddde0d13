//! The safe API against the real library on the CPU: data reaches libdsa and comes back in the
//! right places, and failures become `dsa::Error` with libdsa's code and message.
use dsa::{
    Bf16, Context, ContextOptions, DType, Device, Fp8E4M3, IndexerLossMode, IndexerLossParams, IndexerParams, QuantizeFp8Params,
    ScaleFormat, SparseAttentionBackwardMode, SparseAttentionBackwardParams, SparseAttentionParams, Status, Stream, TensorView, TensorViewMut, TopkOrder, TopkParams, Workspace,
};

/// Deterministic values in (-scale, scale), different for every seed.
fn random_floats(count: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The value of an e4m3 "fn" code (DSA_SPEC section 2).
fn decode_e4m3(code: u8) -> f32 {
    let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exponent, mantissa) = ((code >> 3) & 0xF, code & 0x7);
    if exponent == 0xF && mantissa == 0x7 {
        return f32::NAN;
    }
    let magnitude = if exponent == 0 {
        mantissa as f32 * 2f32.powi(-9)
    } else {
        (1.0 + mantissa as f32 / 8.0) * 2f32.powi(exponent as i32 - 7)
    };
    sign * magnitude
}

const ROWS: usize = 3;
const N: usize = 256;
const GROUP: usize = 128;

fn quantize(context: &Context, x: &[f32]) -> (Vec<Fp8E4M3>, Vec<f32>) {
    let (mut codes, mut scales) = (vec![Fp8E4M3(0xAA); ROWS * N], vec![f32::NAN; ROWS * N / GROUP]);
    context
        .quantize_fp8(
            None,
            &TensorView::new(x, &[ROWS as i64, N as i64]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[ROWS as i64, N as i64]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[ROWS as i64, (N / GROUP) as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    (codes, scales)
}

#[test]
fn versions_and_strings() {
    assert_eq!(dsa::version() / 10000, dsa::HEADER_VERSION / 10000, "major version of the library");
    let version = dsa::version();
    assert_eq!(dsa::version_string(), format!("{}.{}.{}", version / 10000, version / 100 % 100, version % 100));
    assert!(dsa::build_info().contains("cpu"), "{}", dsa::build_info());
    assert_eq!(Status::ShapeMismatch.description(), "shape mismatch");
    assert_eq!(Status::from_code(Status::Internal.code()), Some(Status::Internal));
    assert_eq!(Status::from_code(0), None);
    assert_eq!(DType::Bf16.size(), 2);
    assert_eq!(DType::I64.size(), 8);
}

#[test]
fn context_reports_its_device_and_threads() {
    let context = Context::with_options(&ContextOptions { device: Device::Cpu, num_threads: 3 }).unwrap();
    assert_eq!(context.device().unwrap(), Device::Cpu);
    assert_eq!(context.num_threads().unwrap(), 3);
    assert!(Context::new().unwrap().num_threads().unwrap() >= 1);
}

#[test]
fn quantize_then_dequantize_round_trips() {
    let context = Context::new().unwrap();
    let x = random_floats(ROWS * N, 1, 5.0);
    let (codes, scales) = quantize(&context, &x);
    for (group, &scale) in scales.iter().enumerate() {
        let values = &x[group * GROUP..(group + 1) * GROUP];
        let amax = values.iter().fold(0f32, |amax, v| amax.max(v.abs()));
        assert_eq!(scale, amax / 448.0, "group {group}");
    }
    let mut y = vec![f32::NAN; ROWS * N];
    context
        .dequantize_fp8(
            None,
            &TensorView::new(&codes, &[ROWS as i64, N as i64]).unwrap(),
            &TensorView::new(&scales, &[ROWS as i64, (N / GROUP) as i64]).unwrap(),
            &mut TensorViewMut::new(&mut y, &[ROWS as i64, N as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for i in 0..ROWS * N {
        let scale = scales[i / GROUP];
        assert_eq!(y[i], decode_e4m3(codes[i].0) * scale, "element {i}");
        // e4m3 keeps 3 mantissa bits: the error is at most half a step of the value's binade.
        assert!((y[i] - x[i]).abs() <= x[i].abs() / 16.0 + scale * 2f32.powi(-10), "element {i}: {} vs {}", y[i], x[i]);
    }
}

#[test]
fn strided_rows_and_bf16_outputs() {
    let context = Context::new().unwrap();
    let x = random_floats(ROWS * N, 2, 1.0);
    let (codes, scales) = quantize(&context, &x);
    // The same codes and scales seen through padded rows and a scale column of stride 3.
    let mut padded_codes = vec![0u8; ROWS * (N + 32)];
    let mut spread_scales = vec![f32::NAN; ROWS * 2 * 3];
    for row in 0..ROWS {
        for i in 0..N {
            padded_codes[row * (N + 32) + i] = codes[row * N + i].0;
        }
        for group in 0..2 {
            spread_scales[row * 6 + group * 3] = scales[row * 2 + group];
        }
    }
    let mut y = vec![Bf16(0xFFFF); ROWS * N];
    let params = dsa::QuantizeFp8Params { group_size: GROUP as i32, ..Default::default() };
    context
        .dequantize_fp8(
            Some(&params),
            &TensorView::strided(&padded_codes, &[ROWS as i64, N as i64], &[(N + 32) as i64, 1]).unwrap(),
            &TensorView::strided(&spread_scales, &[ROWS as i64, 2], &[6, 3]).unwrap(),
            &mut TensorViewMut::new(&mut y, &[ROWS as i64, N as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for i in 0..ROWS * N {
        assert_eq!(y[i], Bf16::from_f32(decode_e4m3(codes[i].0) * scales[i / GROUP]), "element {i}");
    }
}

#[test]
fn ue8m0_scales_are_powers_of_two() {
    let context = Context::new().unwrap();
    let x = random_floats(2 * 64, 3, 100.0);
    let (mut codes, mut scales) = (vec![0u8; 128], vec![0f32; 2]);
    let params = dsa::QuantizeFp8Params { group_size: 64, scale_format: dsa::ScaleFormat::UE8M0, ..Default::default() };
    context
        .quantize_fp8(
            Some(&params),
            &TensorView::new(&x, &[2, 64]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[2, 64]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[2, 1]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for (group, &scale) in scales.iter().enumerate() {
        let amax = x[group * 64..(group + 1) * 64].iter().fold(0f32, |amax, v| amax.max(v.abs()));
        assert_eq!(scale.to_bits() & 0x007F_FFFF, 0, "scale {scale} is not a power of two");
        assert!(amax / scale <= 448.0 && amax / scale > 224.0, "scale {scale} for amax {amax}");
    }
}

#[test]
fn hadamard_is_its_own_inverse_and_works_in_place() {
    let context = Context::new().unwrap();
    let x = random_floats(4 * 128, 4, 2.0);
    let mut rotated = vec![f32::NAN; x.len()];
    context
        .hadamard(None, &TensorView::new(&x, &[4, 128]).unwrap(), &mut TensorViewMut::new(&mut rotated, &[4, 128]).unwrap(), Stream::DEFAULT)
        .unwrap();
    // Row 0 against the definition: (x . H)_0 = sum(x) / sqrt(n).
    let expected: f32 = x[..128].iter().sum::<f32>() / 128f32.sqrt();
    assert!((rotated[0] - expected).abs() < 1e-4, "{} vs {expected}", rotated[0]);
    let mut in_place = x.clone();
    context.hadamard_in_place(None, &mut TensorViewMut::new(&mut in_place, &[4, 128]).unwrap(), Stream::DEFAULT).unwrap();
    assert_eq!(in_place, rotated);
    context.hadamard_in_place(None, &mut TensorViewMut::new(&mut in_place, &[4, 128]).unwrap(), Stream::DEFAULT).unwrap();
    for (back, original) in in_place.iter().zip(&x) {
        assert!((back - original).abs() < 1e-5);
    }
}

#[test]
fn hadamard_quantize_fp8_equals_hadamard_then_quantize_fp8() {
    let context = Context::new().unwrap();
    let x = random_floats(4 * 128, 6, 3.0);
    let params = dsa::QuantizeFp8Params { group_size: 32, scale_format: dsa::ScaleFormat::UE8M0, ..Default::default() };
    let mut rotated = vec![0f32; x.len()];
    context
        .hadamard(None, &TensorView::new(&x, &[4, 128]).unwrap(), &mut TensorViewMut::new(&mut rotated, &[4, 128]).unwrap(), Stream::DEFAULT)
        .unwrap();
    let (mut want_codes, mut want_scales) = (vec![0u8; x.len()], vec![0f32; 16]);
    context
        .quantize_fp8(
            Some(&params),
            &TensorView::new(&rotated, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut want_codes, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut want_scales, &[4, 4]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    let (mut codes, mut scales) = (vec![0xFFu8; x.len()], vec![f32::NAN; 16]);
    context
        .hadamard_quantize_fp8(
            None,
            Some(&params),
            &TensorView::new(&x, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[4, 4]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    assert_eq!(codes, want_codes);
    assert_eq!(scales, want_scales);

    let bad = dsa::QuantizeFp8Params { group_size: 0, ..Default::default() };
    let error = context
        .hadamard_quantize_fp8(
            None,
            Some(&bad),
            &TensorView::new(&x, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[4, 128]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[4, 4]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument));
    assert!(error.message().starts_with("quantize_params.group_size"), "{}", error.message());
}

#[test]
fn library_errors_carry_code_and_message() {
    let context = Context::new().unwrap();
    let x = random_floats(2 * 128, 5, 1.0);
    let (mut codes, mut scales) = (vec![0x5Au8; 256], vec![7f32; 2]);
    let params = dsa::QuantizeFp8Params { group_size: 100, ..Default::default() };
    let error = context
        .quantize_fp8(
            Some(&params),
            &TensorView::new(&x, &[2, 128]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[2, 128]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[2, 1]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument));
    assert_eq!(error.code(), dsa::sys::DSA_STATUS_INVALID_ARGUMENT);
    assert!(error.message().starts_with("params.group_size"), "{}", error.message());
    assert!(error.to_string().starts_with("invalid argument: params.group_size"), "{error}");
    assert!(codes.iter().all(|&code| code == 0x5A) && scales == [7.0, 7.0], "outputs untouched");

    let mut wrong = vec![0i32; 2 * 128];
    let error = context
        .hadamard(None, &TensorView::new(&x, &[2, 128]).unwrap(), &mut TensorViewMut::new(&mut wrong, &[2, 128]).unwrap(), Stream::DEFAULT)
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::DtypeMismatch));
    assert!(error.message().starts_with("y:"), "{}", error.message());
}

#[test]
fn views_are_checked_before_any_call() {
    let data = vec![0f32; 10];
    let error = TensorView::new(&data, &[3, 4]).unwrap_err();
    assert_eq!(error.status(), Some(Status::ShapeMismatch));
    assert!(error.message().starts_with("data:"), "{}", error.message());
    assert_eq!(TensorView::strided(&data, &[3, 4], &[4, 1]).unwrap_err().status(), Some(Status::ShapeMismatch));
    assert!(TensorView::strided(&data, &[2, 3], &[5, 1]).is_ok());
    assert_eq!(TensorView::strided(&data, &[2, 2], &[-1, 1]).unwrap_err().status(), Some(Status::LayoutUnsupported));
    assert_eq!(TensorView::strided(&data, &[2, 2], &[1]).unwrap_err().status(), Some(Status::InvalidArgument));
    // libdsa's own checks: a rank above DSA_MAX_DIMS and a negative extent.
    assert_eq!(TensorView::new(&data, &[1; 9]).unwrap_err().status(), Some(Status::InvalidArgument));
    assert_eq!(TensorView::new(&data, &[-1]).unwrap_err().status(), Some(Status::ShapeMismatch));
    assert_eq!(TensorView::new(&data[..0], &[0, 5]).unwrap().shape(), &[0, 5]);
}

#[test]
fn device_memory_views_are_refused_by_a_cpu_context() {
    let context = Context::new().unwrap();
    // A made-up device address: libdsa compares devices before touching any memory, and a
    // CPU-only build refuses CUDA tensors outright.
    let device = 0x7f00_0000_0000usize as *mut std::os::raw::c_void;
    let x = unsafe { TensorView::from_raw(device, DType::F32, &[4, 128], None, Device::Cuda(0)) }.unwrap();
    let mut y = unsafe { TensorViewMut::from_raw(device, DType::F32, &[4, 128], None, Device::Cuda(0)) }.unwrap();
    let error = context.hadamard(None, &x, &mut y, Stream::DEFAULT).unwrap_err();
    assert!(matches!(error.status(), Some(Status::DeviceMismatch | Status::Unsupported)), "{error}");
    assert!(error.message().starts_with("x:"), "{error}");
    match Context::with_options(&ContextOptions { device: Device::Cuda(0), num_threads: 0 }) {
        Ok(cuda) => assert_eq!(cuda.device().unwrap(), Device::Cuda(0)),
        Err(error) => assert!(matches!(error.status(), Some(Status::Unsupported | Status::CudaError)), "{error}"),
    }
}

#[test]
fn one_context_serves_many_threads_with_their_own_errors() {
    fn shared<T: Send + Sync>(_: &T) {}
    let context = Context::new().unwrap();
    shared(&context);
    let x = random_floats(ROWS * N, 6, 3.0);
    let expected = quantize(&context, &x);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let (context, x, expected) = (&context, &x, &expected);
            scope.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(&quantize(context, x), expected);
                    let bad = dsa::QuantizeFp8Params { group_size: -1 - thread, ..Default::default() };
                    let (mut codes, mut scales) = (vec![0u8; 128], vec![0f32; 1]);
                    let error = context
                        .quantize_fp8(
                            Some(&bad),
                            &TensorView::new(&x[..128], &[1, 128]).unwrap(),
                            &mut TensorViewMut::new(&mut codes, &[1, 128]).unwrap(),
                            &mut TensorViewMut::new(&mut scales, &[1, 1]).unwrap(),
                            Stream::DEFAULT,
                        )
                        .unwrap_err();
                    assert_eq!(error.message(), format!("params.group_size: must be > 0, got {}", -1 - thread));
                }
            });
        }
    });
}

fn topk_rows(context: &Context, params: &TopkParams, scores: &[f32], windows: Option<(&[i32], &[i32])>) -> Vec<i32> {
    let rows = (scores.len() / 8) as i64;
    let mut indices = vec![i32::MIN; rows as usize * params.k as usize];
    let starts = windows.map(|(starts, _)| TensorView::new(starts, &[rows]).unwrap());
    let ends = windows.map(|(_, ends)| TensorView::new(ends, &[rows]).unwrap());
    context
        .topk(
            Some(params),
            &TensorView::new(scores, &[rows, 8]).unwrap(),
            starts.as_ref(),
            ends.as_ref(),
            None,
            &mut TensorViewMut::new(&mut indices, &[rows, params.k as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    indices
}

#[test]
fn topk_prefers_larger_scores_then_smaller_indices() {
    let context = Context::new().unwrap();
    #[rustfmt::skip]
    let scores = [
        0.5, 2.0, -1.0, 2.0, f32::NAN, 3.0, f32::NEG_INFINITY, 0.5,
        9.0, 8.0, 1.0, f32::NAN, 1.0, 7.0, 7.0, 7.0,
    ];
    let params = TopkParams { k: 4, order: TopkOrder::SCORE, ..Default::default() };
    // Row 0: 3.0 at 5, the tied 2.0s at 1 then 3, and of the tied 0.5s the one at 0; NaN never.
    // Row 1, window [2, 6): 7.0 at 5, the tied 1.0s at 2 then 4 (NaN at 3 skipped), -1 padding.
    let windowed = topk_rows(&context, &params, &scores, Some((&[0, 2], &[8, 6])));
    assert_eq!(windowed, [5, 1, 3, 0, 5, 2, 4, -1]);
    // No windows (whole rows), ascending indices: row 1 takes 9.0, 8.0 and the first two 7.0s.
    let by_index = TopkParams { order: TopkOrder::INDEX, ..params };
    assert_eq!(topk_rows(&context, &by_index, &scores, None), [0, 1, 3, 5, 0, 1, 5, 6]);
    // A block table of pages of 2 tokens maps token i of a row to slot table[i / 2] * 2 + i % 2.
    let table = [3, 0, 5, 1];
    let mut slots = vec![0i32; 4];
    let table_params = TopkParams { page_size: 2, ..params };
    context
        .topk(
            Some(&table_params),
            &TensorView::new(&scores[..8], &[1, 8]).unwrap(),
            None,
            None,
            Some(&TensorView::new(&table, &[1, 4]).unwrap()),
            &mut TensorViewMut::new(&mut slots, &[1, 4]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    // Tokens 5, 1, 3, 0 sit in pages 5, 3, 0, 3 at offsets 1, 1, 1, 0.
    assert_eq!(slots, [11, 7, 1, 6]);
}

/// Deterministic e4m3 codes of moderate magnitude (never NaN), different for every seed.
fn random_codes(count: usize, seed: u64) -> Vec<Fp8E4M3> {
    random_floats(count, seed, 1.0).iter().map(|v| Fp8E4M3(((v.abs() * 80.0) as u8) | if *v < 0.0 { 0x80 } else { 0 })).collect()
}

/// DSA_SPEC section 4 in f64: logits[t, s] = k_scale[s] * sum_h w[t, h] * ReLU(q[t, h] . k[s]).
fn reference_logits(q: &[Fp8E4M3], weights: &[f32], k: &[Fp8E4M3], k_scale: &[f32], heads: usize, dim: usize, t: usize, s: usize) -> f64 {
    let mut sum = 0f64;
    for h in 0..heads {
        let dot: f64 = (0..dim).map(|d| decode_e4m3(q[(t * heads + h) * dim + d].0) as f64 * decode_e4m3(k[s * dim + d].0) as f64).sum();
        sum += weights[t * heads + h] as f64 * dot.max(0.0);
    }
    k_scale[s] as f64 * sum
}

#[test]
fn indexer_logits_match_the_definition_inside_each_window() {
    let context = Context::new().unwrap();
    let (queries, heads, dim, keys) = (3usize, 2usize, 8usize, 5usize);
    let q = random_codes(queries * heads * dim, 10);
    let k = random_codes(keys * dim, 11);
    let weights = random_floats(queries * heads, 12, 1.0);
    let k_scale: Vec<f32> = random_floats(keys, 13, 1.0).iter().map(|v| v.abs() + 0.1).collect();
    let (ks, ke) = ([0, 1, 4], [1, 4, 2]); // the last window is empty
    let mut logits = vec![f32::NAN; queries * keys];
    context
        .indexer_logits(
            Some(&IndexerParams::default()),
            &TensorView::new(&q, &[queries as i64, heads as i64, dim as i64]).unwrap(),
            &TensorView::new(&weights, &[queries as i64, heads as i64]).unwrap(),
            &TensorView::new(&k, &[keys as i64, dim as i64]).unwrap(),
            &TensorView::new(&k_scale, &[keys as i64]).unwrap(),
            &TensorView::new(&ks, &[queries as i64]).unwrap(),
            &TensorView::new(&ke, &[queries as i64]).unwrap(),
            &mut TensorViewMut::new(&mut logits, &[queries as i64, keys as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for t in 0..queries {
        for s in 0..keys {
            let value = logits[t * keys + s];
            if (ks[t]..ke[t]).contains(&(s as i32)) {
                let expected = reference_logits(&q, &weights, &k, &k_scale, heads, dim, t, s);
                assert!((value as f64 - expected).abs() <= 1e-5 * expected.abs().max(1.0), "[{t}, {s}]: {value} vs {expected}");
            } else {
                assert_eq!(value, f32::NEG_INFINITY, "[{t}, {s}]");
            }
        }
    }
}

#[test]
fn indexer_cache_write_then_paged_logits() {
    let context = Context::new().unwrap();
    let (dim, heads, tokens, pages) = (16usize, 2usize, 3usize, 2usize);
    let page_bytes = 64 * (dim + 4);
    let keys = random_floats(tokens * dim, 20, 3.0);
    // Token i goes to slot 64 + i (page 1); the -1 of a padding token is skipped.
    let slots = [64i64, 65, 66, -1];
    let mut padded_keys = keys.clone();
    padded_keys.extend(random_floats(dim, 21, 3.0));
    let mut cache = vec![0xEEu8; pages * page_bytes];
    context
        .indexer_cache_write(
            &TensorView::new(&padded_keys, &[4, dim as i64]).unwrap(),
            &TensorView::new(&slots, &[4]).unwrap(),
            &mut TensorViewMut::new(&mut cache, &[pages as i64, page_bytes as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    // The cache holds what quantize_fp8 gives with one ue8m0 group per token.
    let (mut codes, mut scales) = (vec![Fp8E4M3(0); tokens * dim], vec![0f32; tokens]);
    let params = QuantizeFp8Params { group_size: dim as i32, scale_format: ScaleFormat::UE8M0, ..Default::default() };
    context
        .quantize_fp8(
            Some(&params),
            &TensorView::new(&keys, &[tokens as i64, dim as i64]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[tokens as i64, dim as i64]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[tokens as i64, 1]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    let page = &cache[page_bytes..];
    for i in 0..tokens {
        assert!(page[i * dim..(i + 1) * dim].iter().zip(&codes[i * dim..]).all(|(byte, code)| *byte == code.0), "token {i}");
        let scale = f32::from_ne_bytes(page[64 * dim + 4 * i..64 * dim + 4 * i + 4].try_into().unwrap());
        assert_eq!(scale, scales[i], "token {i}");
    }
    assert!(cache[..page_bytes].iter().all(|&byte| byte == 0xEE), "page 0 untouched");
    assert!(page[tokens * dim..64 * dim].iter().all(|&byte| byte == 0xEE), "unused rows untouched");

    // One sequence of 3 tokens in page 1 (block table [1, 0]), two next-token queries: query j
    // sees tokens [0, 3 - 2 + j + 1).
    let q = random_codes(2 * heads * dim, 22);
    let weights = random_floats(2 * heads, 23, 1.0);
    let (table, lens) = ([1i32, 0], [3i32]);
    let mut logits = vec![f32::NAN; 2 * 128];
    context
        .indexer_logits_paged(
            None,
            &TensorView::new(&q, &[1, 2, heads as i64, dim as i64]).unwrap(),
            &TensorView::new(&weights, &[2, heads as i64]).unwrap(),
            &TensorView::new(&cache, &[pages as i64, page_bytes as i64]).unwrap(),
            &TensorView::new(&table, &[1, 2]).unwrap(),
            &TensorView::new(&lens, &[1]).unwrap(),
            &mut TensorViewMut::new(&mut logits, &[2, 128]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for j in 0..2 {
        for s in 0..128 {
            let value = logits[j * 128 + s];
            if s < 2 + j {
                let expected = reference_logits(&q, &weights, &codes, &scales, heads, dim, j, s);
                assert!((value as f64 - expected).abs() <= 1e-5 * expected.abs().max(1.0), "[{j}, {s}]: {value} vs {expected}");
            } else {
                assert_eq!(value, f32::NEG_INFINITY, "[{j}, {s}]");
            }
        }
    }
}

fn bf16s(count: usize, seed: u64, scale: f32) -> Vec<Bf16> {
    random_floats(count, seed, scale).into_iter().map(Bf16::from_f32).collect()
}

/// One query row of sparse attention in f64 (DSA_SPEC section 6): (out [H, d_v], lse [H],
/// max_logits [H]) over the valid `selected` rows of kv.
fn reference_attention(q: &[Bf16], kv: &[Bf16], selected: &[i32], sink: Option<&[f32]>, scale: f64, d_qk: usize, d_v: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let heads = q.len() / d_qk;
    let valid: Vec<usize> = selected.iter().filter(|&&s| s >= 0 && (s as usize) < kv.len() / d_qk).map(|&s| s as usize).collect();
    let (mut out, mut lse, mut max_logits) = (vec![0f64; heads * d_v], vec![0f64; heads], vec![0f64; heads]);
    for h in 0..heads {
        let z: Vec<f64> = valid
            .iter()
            .map(|&s| scale * (0..d_qk).map(|d| q[h * d_qk + d].to_f32() as f64 * kv[s * d_qk + d].to_f32() as f64).sum::<f64>())
            .collect();
        let denominator: f64 = z.iter().map(|z| z.exp()).sum();
        lse[h] = denominator.ln();
        max_logits[h] = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total = denominator + sink.map_or(0.0, |sink| (sink[h] as f64).exp());
        for (j, &s) in valid.iter().enumerate() {
            for d in 0..d_v {
                out[h * d_v + d] += z[j].exp() * kv[s * d_qk + d].to_f32() as f64 / total;
            }
        }
    }
    (out, lse, max_logits)
}

fn assert_close(actual: f32, expected: f64, tolerance: f64, what: &str) {
    assert!((actual as f64 - expected).abs() <= tolerance * expected.abs().max(1.0), "{what}: {actual} vs {expected}");
}

#[test]
fn sparse_attention_matches_an_f64_reference() {
    let context = Context::new().unwrap();
    let (rows, heads, d_qk, d_v, keys, k) = (2usize, 3usize, 16usize, 8usize, 6usize, 4usize);
    let q = bf16s(rows * heads * d_qk, 30, 1.0);
    let kv = bf16s(keys * d_qk, 31, 1.0);
    // Row 0 repeats 5 (it counts twice) and pads with -1; row 1 has an out-of-range 9.
    let indices = [4, 5, 5, -1, 2, 0, 9, 3];
    let sink = [0.5f32, -0.25, 1.0];
    let params = SparseAttentionParams { scale: 0.3, d_v: d_v as i32 };
    let mut out = vec![Bf16(0xFFFF); rows * heads * d_v];
    let (mut lse, mut max_logits) = (vec![f32::NAN; rows * heads], vec![f32::NAN; rows * heads]);
    context
        .sparse_attention(
            &params,
            &TensorView::new(&q, &[rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&kv, &[keys as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&indices, &[rows as i64, k as i64]).unwrap(),
            Some(&TensorView::new(&sink, &[heads as i64]).unwrap()),
            None,
            &mut TensorViewMut::new(&mut out, &[rows as i64, heads as i64, d_v as i64]).unwrap(),
            &mut TensorViewMut::new(&mut lse, &[rows as i64, heads as i64]).unwrap(),
            Some(&mut TensorViewMut::new(&mut max_logits, &[rows as i64, heads as i64]).unwrap()),
            Stream::DEFAULT,
        )
        .unwrap();
    for t in 0..rows {
        let row_q = &q[t * heads * d_qk..(t + 1) * heads * d_qk];
        let (expected_out, expected_lse, expected_max) = reference_attention(row_q, &kv, &indices[t * k..(t + 1) * k], Some(&sink), 0.3, d_qk, d_v);
        for h in 0..heads {
            assert_close(lse[t * heads + h], expected_lse[h], 1e-5, &format!("lse[{t}, {h}]"));
            assert_close(max_logits[t * heads + h], expected_max[h], 1e-5, &format!("max_logits[{t}, {h}]"));
            for d in 0..d_v {
                let i = (t * heads + h) * d_v + d;
                assert_close(out[i].to_f32(), expected_out[h * d_v + d], 1.0 / 128.0, &format!("out[{t}, {h}, {d}]"));
            }
        }
    }

    // The paged form over the same entries as 2 pages of 3 tokens, topk_length 2 for row 1, no sink.
    let lengths = [4, 2];
    let (mut paged_out, mut paged_lse) = (vec![Bf16(0xFFFF); rows * heads * d_v], vec![f32::NAN; rows * heads]);
    context
        .sparse_attention_paged(
            &params,
            &TensorView::new(&q, &[1, rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&kv, &[2, 3, d_qk as i64]).unwrap(),
            &TensorView::new(&indices, &[1, rows as i64, k as i64]).unwrap(),
            None,
            Some(&TensorView::new(&lengths, &[1, rows as i64]).unwrap()),
            &mut TensorViewMut::new(&mut paged_out, &[1, rows as i64, heads as i64, d_v as i64]).unwrap(),
            &mut TensorViewMut::new(&mut paged_lse, &[1, rows as i64, heads as i64]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for t in 0..rows {
        let row_q = &q[t * heads * d_qk..(t + 1) * heads * d_qk];
        let selected = &indices[t * k..t * k + lengths[t] as usize];
        let (expected_out, expected_lse, _) = reference_attention(row_q, &kv, selected, None, 0.3, d_qk, d_v);
        for h in 0..heads {
            assert_close(paged_lse[t * heads + h], expected_lse[h], 1e-5, &format!("paged lse[{t}, {h}]"));
            for d in 0..d_v {
                let i = (t * heads + h) * d_v + d;
                assert_close(paged_out[i].to_f32(), expected_out[h * d_v + d], 1.0 / 128.0, &format!("paged out[{t}, {h}, {d}]"));
            }
        }
    }
}

#[test]
fn mla_cache_write_stores_codes_scales_and_rope_keys() {
    let context = Context::new().unwrap();
    let (tokens, pages, page_size) = (2usize, 2usize, 4usize);
    let c_kv = random_floats(tokens * 512, 40, 4.0);
    let k_pe = random_floats(tokens * 64, 41, 2.0);
    let slots = [6i64, 1];
    let mut cache = vec![0xEEu8; pages * page_size * 656];
    context
        .mla_cache_write(
            &TensorView::new(&c_kv, &[tokens as i64, 512]).unwrap(),
            &TensorView::new(&k_pe, &[tokens as i64, 64]).unwrap(),
            &TensorView::new(&slots, &[tokens as i64]).unwrap(),
            &mut TensorViewMut::new(&mut cache, &[pages as i64, page_size as i64, 656]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    let (mut codes, mut scales) = (vec![Fp8E4M3(0); tokens * 512], vec![0f32; tokens * 4]);
    let params = QuantizeFp8Params { group_size: 128, scale_format: ScaleFormat::UE8M0, ..Default::default() };
    context
        .quantize_fp8(
            Some(&params),
            &TensorView::new(&c_kv, &[tokens as i64, 512]).unwrap(),
            &mut TensorViewMut::new(&mut codes, &[tokens as i64, 512]).unwrap(),
            &mut TensorViewMut::new(&mut scales, &[tokens as i64, 4]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    for (t, &slot) in slots.iter().enumerate() {
        let entry = &cache[slot as usize * 656..(slot as usize + 1) * 656];
        assert!(entry[..512].iter().zip(&codes[t * 512..]).all(|(byte, code)| *byte == code.0), "token {t} codes");
        for g in 0..4 {
            assert_eq!(f32::from_ne_bytes(entry[512 + 4 * g..516 + 4 * g].try_into().unwrap()), scales[t * 4 + g], "token {t} scale {g}");
        }
        for d in 0..64 {
            let bits = u16::from_ne_bytes(entry[528 + 2 * d..530 + 2 * d].try_into().unwrap());
            assert_eq!(Bf16(bits), Bf16::from_f32(k_pe[t * 64 + d]), "token {t} k_pe {d}");
        }
    }
    let written = |index: usize| slots.iter().any(|&slot| index / 656 == slot as usize);
    assert!(cache.iter().enumerate().all(|(i, &byte)| written(i) || byte == 0xEE), "other entries untouched");
}

#[test]
fn new_ops_report_bad_params_by_name() {
    let context = Context::new().unwrap();
    let (q, kv, indices) = (bf16s(2 * 16, 50, 1.0), bf16s(3 * 16, 51, 1.0), [0i32, 1, 2, 0]);
    let (mut out, mut lse) = (vec![Bf16(0x1234); 2 * 8], vec![7f32; 2]);
    let params = SparseAttentionParams { d_v: 8, ..Default::default() };
    assert_eq!(params.scale, 0.0, "scale has no default");
    let error = context
        .sparse_attention(
            &params,
            &TensorView::new(&q, &[2, 1, 16]).unwrap(),
            &TensorView::new(&kv, &[3, 16]).unwrap(),
            &TensorView::new(&indices, &[2, 2]).unwrap(),
            None,
            None,
            &mut TensorViewMut::new(&mut out, &[2, 1, 8]).unwrap(),
            &mut TensorViewMut::new(&mut lse, &[2, 1]).unwrap(),
            None,
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument), "{error}");
    assert!(error.message().starts_with("params.scale"), "{error}");
    assert!(out.iter().all(|&value| value == Bf16(0x1234)) && lse == [7.0, 7.0], "outputs untouched");

    let scores = random_floats(8, 52, 1.0);
    let mut selected = vec![0i32; 2];
    let error = context
        .topk(
            Some(&TopkParams { k: 2, n_sink: 2, n_local: 1, ..Default::default() }),
            &TensorView::new(&scores, &[1, 8]).unwrap(),
            None,
            None,
            None,
            &mut TensorViewMut::new(&mut selected, &[1, 2]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument), "{error}");
    assert!(error.message().starts_with("params.n_sink + params.n_local"), "{error}");
}

/// A 16-byte aligned host workspace of at least `bytes` bytes.
fn aligned_bytes(bytes: usize) -> Vec<u128> {
    vec![0u128; (bytes + 15) / 16]
}

fn as_bytes(memory: &mut [u128]) -> &mut [u8] {
    unsafe { std::slice::from_raw_parts_mut(memory.as_mut_ptr().cast(), memory.len() * 16) }
}

#[test]
fn fused_prefill_equals_its_parts() {
    let context = Context::new().unwrap();
    let (queries, heads, dim, keys, k) = (4i64, 2i64, 16i64, 10i64, 3i64);
    let (q_heads, d_qk, d_v) = (2i64, 16i64, 8i64);
    let index_q = random_codes((queries * heads * dim) as usize, 60);
    let index_k = random_codes((keys * dim) as usize, 61);
    let weights = random_floats((queries * heads) as usize, 62, 1.0);
    let k_scale: Vec<f32> = random_floats(keys as usize, 63, 1.0).iter().map(|v| v.abs() + 0.1).collect();
    let (ks, ke) = ([0i32, 0, 2, 5], [1i32, 6, 10, 9]);
    let q = bf16s((queries * q_heads * d_qk) as usize, 64, 1.0);
    let kv = bf16s((keys * d_qk) as usize, 65, 1.0);
    let topk = TopkParams { k: k as i32, order: TopkOrder::SCORE, ..Default::default() };
    let attention = SparseAttentionParams { scale: 0.25, d_v: d_v as i32 };
    let (q_view, w_view) = (TensorView::new(&index_q, &[queries, heads, dim]).unwrap(), TensorView::new(&weights, &[queries, heads]).unwrap());
    let (k_view, scale_view) = (TensorView::new(&index_k, &[keys, dim]).unwrap(), TensorView::new(&k_scale, &[keys]).unwrap());
    let (ks_view, ke_view) = (TensorView::new(&ks, &[queries]).unwrap(), TensorView::new(&ke, &[queries]).unwrap());

    // The parts: logits, top-k over the windows, sparse attention.
    let mut logits = vec![0f32; (queries * keys) as usize];
    let mut logits_view = TensorViewMut::new(&mut logits, &[queries, keys]).unwrap();
    context.indexer_logits(None, &q_view, &w_view, &k_view, &scale_view, &ks_view, &ke_view, &mut logits_view, Stream::DEFAULT).unwrap();
    let mut expected = vec![0i32; (queries * k) as usize];
    context
        .topk(
            Some(&topk),
            &TensorView::new(&logits, &[queries, keys]).unwrap(),
            Some(&ks_view),
            Some(&ke_view),
            None,
            &mut TensorViewMut::new(&mut expected, &[queries, k]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    assert_eq!(&expected[..3], [0, -1, -1], "a window of one token");

    // Fused indexer + top-k, with the library's scratch and with a workspace of the queried size.
    let bytes = context.indexer_topk_workspace_size(queries, keys).unwrap();
    let mut memory = aligned_bytes(bytes);
    for workspace in [None, Some(Workspace::new(&mut as_bytes(&mut memory)[..bytes]))] {
        let mut workspace = workspace;
        let mut indices = vec![i32::MIN; (queries * k) as usize];
        context
            .indexer_topk(
                None,
                Some(&topk),
                &q_view,
                &w_view,
                &k_view,
                &scale_view,
                &ks_view,
                &ke_view,
                &mut TensorViewMut::new(&mut indices, &[queries, k]).unwrap(),
                workspace.as_mut(),
                Stream::DEFAULT,
            )
            .unwrap();
        assert_eq!(indices, expected);
    }
    if bytes > 0 {
        let mut indices = vec![0i32; (queries * k) as usize];
        let error = context
            .indexer_topk(
                None,
                Some(&topk),
                &q_view,
                &w_view,
                &k_view,
                &scale_view,
                &ks_view,
                &ke_view,
                &mut TensorViewMut::new(&mut indices, &[queries, k]).unwrap(),
                Some(&mut Workspace::new(&mut as_bytes(&mut memory)[..bytes - 1])),
                Stream::DEFAULT,
            )
            .unwrap_err();
        assert_eq!(error.status(), Some(Status::WorkspaceTooSmall), "{error}");
        assert!(error.message().starts_with("workspace"), "{error}");
    }

    let mut expected_out = vec![Bf16(0); (queries * q_heads * d_v) as usize];
    let mut expected_lse = vec![0f32; (queries * q_heads) as usize];
    let q_view = TensorView::new(&q, &[queries, q_heads, d_qk]).unwrap();
    let kv_view = TensorView::new(&kv, &[keys, d_qk]).unwrap();
    context
        .sparse_attention(
            &attention,
            &q_view,
            &kv_view,
            &TensorView::new(&expected, &[queries, k]).unwrap(),
            None,
            None,
            &mut TensorViewMut::new(&mut expected_out, &[queries, q_heads, d_v]).unwrap(),
            &mut TensorViewMut::new(&mut expected_lse, &[queries, q_heads]).unwrap(),
            None,
            Stream::DEFAULT,
        )
        .unwrap();
    // The one-call layer, with a workspace and the selected indices.
    let bytes = context.attention_workspace_size(Some(&topk), queries, keys).unwrap();
    let mut memory = aligned_bytes(bytes);
    let (mut out, mut lse) = (vec![Bf16(0xFFFF); expected_out.len()], vec![f32::NAN; expected_lse.len()]);
    let mut selected = vec![i32::MIN; expected.len()];
    context
        .attention(
            None,
            Some(&topk),
            &attention,
            &TensorView::new(&index_q, &[queries, heads, dim]).unwrap(),
            &w_view,
            &k_view,
            &scale_view,
            &ks_view,
            &ke_view,
            &q_view,
            &kv_view,
            None,
            &mut TensorViewMut::new(&mut out, &[queries, q_heads, d_v]).unwrap(),
            &mut TensorViewMut::new(&mut lse, &[queries, q_heads]).unwrap(),
            Some(&mut TensorViewMut::new(&mut selected, &[queries, k]).unwrap()),
            Some(&mut Workspace::new(&mut as_bytes(&mut memory)[..bytes])),
            Stream::DEFAULT,
        )
        .unwrap();
    assert_eq!(selected, expected);
    assert_eq!(out, expected_out);
    assert_eq!(lse.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected_lse.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

#[test]
fn fused_decode_equals_its_parts() {
    let context = Context::new().unwrap();
    let (next, heads, dim, k, pages) = (2i64, 2i64, 16i64, 4i64, 2i64);
    let (q_heads, d_qk, d_v) = (2i64, 16i64, 8i64);
    let page_bytes = 64 * (dim + 4);
    // One sequence of 7 tokens in page 1 (block table [1, 0]).
    let keys = random_floats((7 * dim) as usize, 70, 2.0);
    let slots_of_tokens: Vec<i64> = (64..71).collect();
    let mut index_cache = vec![0u8; (pages * page_bytes) as usize];
    context
        .indexer_cache_write(
            &TensorView::new(&keys, &[7, dim]).unwrap(),
            &TensorView::new(&slots_of_tokens, &[7]).unwrap(),
            &mut TensorViewMut::new(&mut index_cache, &[pages, page_bytes]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    let (table, lens) = ([1i32, 0], [7i32]);
    let index_q = random_codes((next * heads * dim) as usize, 71);
    let weights = random_floats((next * heads) as usize, 72, 1.0);
    let q = bf16s((next * q_heads * d_qk) as usize, 73, 1.0);
    let kv_cache = bf16s((pages * 64 * d_qk) as usize, 74, 1.0);
    let topk = TopkParams { k: k as i32, order: TopkOrder::INDEX, ..Default::default() };
    let attention = SparseAttentionParams { scale: 0.25, d_v: d_v as i32 };
    let index_q_view = TensorView::new(&index_q, &[1, next, heads, dim]).unwrap();
    let w_view = TensorView::new(&weights, &[next, heads]).unwrap();
    let cache_view = TensorView::new(&index_cache, &[pages, page_bytes]).unwrap();
    let (table_view, lens_view) = (TensorView::new(&table, &[1, 2]).unwrap(), TensorView::new(&lens, &[1]).unwrap());

    // The parts: paged logits, then top-k as token positions and through the block table.
    let mut logits = vec![0f32; (next * 128) as usize];
    context
        .indexer_logits_paged(None, &index_q_view, &w_view, &cache_view, &table_view, &lens_view, &mut TensorViewMut::new(&mut logits, &[next, 128]).unwrap(), Stream::DEFAULT)
        .unwrap();
    let logits_view = TensorView::new(&logits, &[next, 128]).unwrap();
    let (mut expected_indices, mut expected_slots) = (vec![0i32; (next * k) as usize], vec![0i32; (next * k) as usize]);
    context.topk(Some(&topk), &logits_view, None, None, None, &mut TensorViewMut::new(&mut expected_indices, &[next, k]).unwrap(), Stream::DEFAULT).unwrap();
    let by_page = TopkParams { page_size: 64, ..topk };
    context
        .topk(Some(&by_page), &logits_view, None, None, Some(&table_view), &mut TensorViewMut::new(&mut expected_slots, &[next, k]).unwrap(), Stream::DEFAULT)
        .unwrap();
    assert!(expected_slots.iter().all(|&slot| (64..71).contains(&slot)), "{expected_slots:?}");

    let (mut indices, mut slots) = (vec![i32::MIN; expected_indices.len()], vec![i32::MIN; expected_slots.len()]);
    context
        .indexer_topk_paged(
            None,
            Some(&topk),
            &index_q_view,
            &w_view,
            &cache_view,
            &table_view,
            &lens_view,
            Some(&mut TensorViewMut::new(&mut indices, &[next, k]).unwrap()),
            Some(&mut TensorViewMut::new(&mut slots, &[next, k]).unwrap()),
            None,
            Stream::DEFAULT,
        )
        .unwrap();
    assert_eq!((&indices, &slots), (&expected_indices, &expected_slots));

    let q_view = TensorView::new(&q, &[1, next, q_heads, d_qk]).unwrap();
    let kv_view = TensorView::new(&kv_cache, &[pages, 64, d_qk]).unwrap();
    let (mut expected_out, mut expected_lse) = (vec![Bf16(0); (next * q_heads * d_v) as usize], vec![0f32; (next * q_heads) as usize]);
    context
        .sparse_attention_paged(
            &attention,
            &q_view,
            &kv_view,
            &TensorView::new(&expected_slots, &[1, next, k]).unwrap(),
            None,
            None,
            &mut TensorViewMut::new(&mut expected_out, &[1, next, q_heads, d_v]).unwrap(),
            &mut TensorViewMut::new(&mut expected_lse, &[1, next, q_heads]).unwrap(),
            Stream::DEFAULT,
        )
        .unwrap();
    let (mut out, mut lse) = (vec![Bf16(0xFFFF); expected_out.len()], vec![f32::NAN; expected_lse.len()]);
    context
        .attention_paged(
            None,
            Some(&topk),
            &attention,
            &index_q_view,
            &w_view,
            &cache_view,
            &table_view,
            &lens_view,
            &q_view,
            &kv_view,
            None,
            &mut TensorViewMut::new(&mut out, &[1, next, q_heads, d_v]).unwrap(),
            &mut TensorViewMut::new(&mut lse, &[1, next, q_heads]).unwrap(),
            None,
            None,
            Stream::DEFAULT,
        )
        .unwrap();
    assert_eq!(out, expected_out);
    assert_eq!(lse.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected_lse.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

#[test]
fn a_workspace_must_be_on_the_context_device() {
    let context = Context::new().unwrap();
    let (index_q, weights, index_k, k_scale) = (random_codes(16, 80), vec![1f32], random_codes(32, 81), vec![1f32; 2]);
    let (ks, ke) = ([0i32], [2i32]);
    let mut indices = vec![0i32; 1];
    let mut device = unsafe { Workspace::from_raw(0x7f00_0000_0000usize as *mut std::os::raw::c_void, 1 << 20, Device::Cuda(0)) };
    let error = context
        .indexer_topk(
            None,
            Some(&TopkParams { k: 1, ..Default::default() }),
            &TensorView::new(&index_q, &[1, 1, 16]).unwrap(),
            &TensorView::new(&weights, &[1, 1]).unwrap(),
            &TensorView::new(&index_k, &[2, 16]).unwrap(),
            &TensorView::new(&k_scale, &[2]).unwrap(),
            &TensorView::new(&ks, &[1]).unwrap(),
            &TensorView::new(&ke, &[1]).unwrap(),
            &mut TensorViewMut::new(&mut indices, &[1, 1]).unwrap(),
            Some(&mut device),
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::DeviceMismatch), "{error}");
    assert!(error.message().starts_with("workspace:"), "{error}");
}

/// The indexer distillation loss in f64 (DSA_SPEC section 8.1) over each row's entries, with the
/// teacher distribution of a row given by `teacher(t, entries)`:
/// (loss, row_loss, d_index_q, d_index_k, d_weights).
#[allow(clippy::type_complexity)]
fn reference_indexer_loss(
    q: &[f32],
    k: &[f32],
    w: &[f32],
    entries: &[Vec<usize>],
    teacher: &dyn Fn(usize, &[usize]) -> Vec<f64>,
    (heads, dim, coeff): (usize, usize, f64),
) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = entries.len();
    let u = |t: usize, h: usize, s: usize| (0..dim).map(|d| q[(t * heads + h) * dim + d] as f64 * k[s * dim + d] as f64).sum::<f64>();
    let (mut row_loss, mut g) = (vec![0f64; rows], vec![Vec::new(); rows]);
    for t in 0..rows {
        let p = teacher(t, &entries[t]);
        let logits: Vec<f64> = entries[t].iter().map(|&s| (0..heads).map(|h| w[t * heads + h] as f64 * u(t, h, s).max(0.0)).sum()).collect();
        let total: f64 = logits.iter().map(|l| l.exp()).sum();
        let pi: Vec<f64> = logits.iter().map(|l| l.exp() / total).collect();
        row_loss[t] = p.iter().zip(&pi).map(|(p, pi)| if *p > 0.0 { p * (p / pi).ln() } else { 0.0 }).sum();
        g[t] = pi.iter().zip(&p).map(|(pi, p)| coeff / rows as f64 * (pi - p)).collect();
    }
    let (mut d_q, mut d_k, mut d_w) = (vec![0f64; q.len()], vec![0f64; k.len()], vec![0f64; w.len()]);
    for t in 0..rows {
        for (j, &s) in entries[t].iter().enumerate() {
            for h in 0..heads {
                let value = u(t, h, s);
                d_w[t * heads + h] += g[t][j] * value.max(0.0);
                if value > 0.0 {
                    for d in 0..dim {
                        d_q[(t * heads + h) * dim + d] += g[t][j] * w[t * heads + h] as f64 * k[s * dim + d] as f64;
                        d_k[s * dim + d] += g[t][j] * w[t * heads + h] as f64 * q[(t * heads + h) * dim + d] as f64;
                    }
                }
            }
        }
    }
    (coeff * row_loss.iter().sum::<f64>() / rows as f64, row_loss, d_q, d_k, d_w)
}

#[test]
fn indexer_loss_matches_an_f64_reference_in_both_modes() {
    let context = Context::new().unwrap();
    let (rows, tokens, heads, dim, teacher_heads, teacher_dim, topk) = (4usize, 10usize, 3usize, 8usize, 2usize, 4usize, 5usize);
    let (q, k, w) = (random_floats(rows * heads * dim, 60, 1.0), random_floats(tokens * dim, 61, 1.0), random_floats(rows * heads, 62, 1.0));
    let (teacher_q, teacher_k) = (random_floats(rows * teacher_heads * teacher_dim, 63, 2.0), random_floats(tokens * teacher_dim, 64, 2.0));
    let probs: Vec<f32> = random_floats(rows * tokens, 65, 1.0).iter().map(|v| v.abs() + 0.01).collect();
    let (ks, ke): (Vec<i32>, Vec<i32>) = ((0..rows as i32).collect(), (0..rows as i32).map(|t| 6 + t).collect());
    let indices: Vec<i32> = (0..rows * topk).map(|i| [1, -1, 3, 9, 3][i % topk] + (i / topk) as i32).collect();
    let scale = 0.7f64;
    let rebuilt = |t: usize, entries: &[usize]| -> Vec<f64> {
        let mut p = vec![0f64; entries.len()];
        for h in 0..teacher_heads {
            let z: Vec<f64> = entries
                .iter()
                .map(|&s| scale * (0..teacher_dim).map(|d| teacher_q[(t * teacher_heads + h) * teacher_dim + d] as f64 * teacher_k[s * teacher_dim + d] as f64).sum::<f64>())
                .collect();
            let total: f64 = z.iter().map(|z| z.exp()).sum();
            for (value, z) in p.iter_mut().zip(&z) {
                *value += z.exp() / total / teacher_heads as f64;
            }
        }
        p
    };
    let given = |t: usize, entries: &[usize]| -> Vec<f64> {
        let mass: f64 = entries.iter().map(|&s| probs[t * tokens + s] as f64).sum();
        entries.iter().map(|&s| probs[t * tokens + s] as f64 / mass).collect()
    };
    for (mode, with_probs) in [(IndexerLossMode::DENSE, false), (IndexerLossMode::SPARSE, true)] {
        let entries: Vec<Vec<usize>> = (0..rows)
            .map(|t| {
                let (begin, end) = (ks[t], ke[t]);
                if mode == IndexerLossMode::DENSE {
                    (begin as usize..end as usize).collect()
                } else {
                    indices[t * topk..(t + 1) * topk].iter().filter(|&&s| s >= begin && s < end).map(|&s| s as usize).collect()
                }
            })
            .collect();
        let teacher: &dyn Fn(usize, &[usize]) -> Vec<f64> = if with_probs { &given } else { &rebuilt };
        let (loss, row_loss, d_q, d_k, d_w) = reference_indexer_loss(&q, &k, &w, &entries, teacher, (heads, dim, 0.5));
        let params = IndexerLossParams { mode, coeff: 0.5, teacher_scale: scale as f32 };
        let (mut got_loss, mut got_rows) = (vec![f32::NAN; 1], vec![f32::NAN; rows]);
        let (mut got_q, mut got_k, mut got_w) = (vec![f32::NAN; q.len()], vec![f32::NAN; k.len()], vec![f32::NAN; w.len()]);
        let (tq, tk, tp) = (
            TensorView::new(&teacher_q, &[rows as i64, teacher_heads as i64, teacher_dim as i64]).unwrap(),
            TensorView::new(&teacher_k, &[tokens as i64, teacher_dim as i64]).unwrap(),
            TensorView::new(&probs, &[rows as i64, tokens as i64]).unwrap(),
        );
        let selection = TensorView::new(&indices, &[rows as i64, topk as i64]).unwrap();
        context
            .indexer_loss(
                Some(&params),
                &TensorView::new(&q, &[rows as i64, heads as i64, dim as i64]).unwrap(),
                &TensorView::new(&k, &[tokens as i64, dim as i64]).unwrap(),
                &TensorView::new(&w, &[rows as i64, heads as i64]).unwrap(),
                &TensorView::new(&ks, &[rows as i64]).unwrap(),
                &TensorView::new(&ke, &[rows as i64]).unwrap(),
                if mode == IndexerLossMode::SPARSE { Some(&selection) } else { None },
                if with_probs { None } else { Some(&tq) },
                if with_probs { None } else { Some(&tk) },
                if with_probs { Some(&tp) } else { None },
                Some(&mut TensorViewMut::new(&mut got_loss, &[1]).unwrap()),
                Some(&mut TensorViewMut::new(&mut got_rows, &[rows as i64]).unwrap()),
                Some(&mut TensorViewMut::new(&mut got_q, &[rows as i64, heads as i64, dim as i64]).unwrap()),
                Some(&mut TensorViewMut::new(&mut got_k, &[tokens as i64, dim as i64]).unwrap()),
                Some(&mut TensorViewMut::new(&mut got_w, &[rows as i64, heads as i64]).unwrap()),
                Stream::DEFAULT,
            )
            .unwrap();
        assert_close(got_loss[0], loss, 1e-5, "loss");
        for (what, got, want) in [("row_loss", &got_rows, &row_loss), ("d_index_q", &got_q, &d_q), ("d_index_k", &got_k, &d_k), ("d_weights", &got_w, &d_w)] {
            for (i, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
                assert_close(a, b, 1e-4, &format!("{what}[{i}] ({mode:?})"));
            }
        }
    }

    // The teacher given as q and k needs its scale: None params leave it 0.
    let mut untouched = vec![5f32; 1];
    let error = context
        .indexer_loss(
            None,
            &TensorView::new(&q, &[rows as i64, heads as i64, dim as i64]).unwrap(),
            &TensorView::new(&k, &[tokens as i64, dim as i64]).unwrap(),
            &TensorView::new(&w, &[rows as i64, heads as i64]).unwrap(),
            &TensorView::new(&ks, &[rows as i64]).unwrap(),
            &TensorView::new(&ke, &[rows as i64]).unwrap(),
            None,
            Some(&TensorView::new(&teacher_q, &[rows as i64, teacher_heads as i64, teacher_dim as i64]).unwrap()),
            Some(&TensorView::new(&teacher_k, &[tokens as i64, teacher_dim as i64]).unwrap()),
            None,
            Some(&mut TensorViewMut::new(&mut untouched, &[]).unwrap()),
            None,
            None,
            None,
            None,
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument), "{error}");
    assert!(error.message().starts_with("params.teacher_scale"), "{error}");
    assert_eq!(untouched, [5.0]);
}

/// Sparse attention of f64 inputs with a sink (DSA_SPEC section 6): (out [S_q, H, d_v], lse
/// [S_q, H]) for rows of `topk` indices (negative ones skipped).
fn forward_f64(q: &[f64], kv: &[f64], indices: &[i32], sink: &[f64], (heads, d_qk, d_v, topk, scale): (usize, usize, usize, usize, f64)) -> (Vec<f64>, Vec<f64>) {
    let rows = indices.len() / topk;
    let (mut out, mut lse) = (vec![0f64; rows * heads * d_v], vec![f64::INFINITY; rows * heads]);
    for t in 0..rows {
        let valid: Vec<usize> = indices[t * topk..(t + 1) * topk].iter().filter(|&&s| s >= 0).map(|&s| s as usize).collect();
        if valid.is_empty() {
            continue;
        }
        for h in 0..heads {
            let z: Vec<f64> = valid.iter().map(|&s| scale * (0..d_qk).map(|d| q[(t * heads + h) * d_qk + d] * kv[s * d_qk + d]).sum::<f64>()).collect();
            let sum: f64 = z.iter().map(|z| z.exp()).sum();
            lse[t * heads + h] = sum.ln();
            for (j, &s) in valid.iter().enumerate() {
                for c in 0..d_v {
                    out[(t * heads + h) * d_v + c] += z[j].exp() / (sum + sink[h].exp()) * kv[s * d_qk + c];
                }
            }
        }
    }
    (out, lse)
}

#[test]
fn sparse_attention_backward_matches_finite_differences() {
    let context = Context::new().unwrap();
    let (rows, heads, d_qk, d_v, tokens, topk, scale) = (3usize, 2usize, 8usize, 4usize, 6usize, 4usize, 0.4f64);
    let as_f64 = |values: &[f32]| values.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (q, kv, dout, sink) = (random_floats(rows * heads * d_qk, 80, 1.0), random_floats(tokens * d_qk, 81, 1.0), random_floats(rows * heads * d_v, 82, 1.0), random_floats(heads, 83, 1.0));
    let indices = [0i32, 3, 3, -1, 5, 1, 2, 4, -1, -1, -1, -1]; // a repeat; the last row has nothing
    let shape = (heads, d_qk, d_v, topk, scale);
    let (out, lse) = forward_f64(&as_f64(&q), &as_f64(&kv), &indices, &as_f64(&sink), shape);
    let (out, lse): (Vec<f32>, Vec<f32>) = (out.iter().map(|&v| v as f32).collect(), lse.iter().map(|&v| v as f32).collect());
    let params = SparseAttentionBackwardParams { scale: scale as f32, d_v: d_v as i32, mode: SparseAttentionBackwardMode::DETERMINISTIC };
    let (mut dq, mut dkv, mut d_sink) = (vec![f32::NAN; q.len()], vec![f32::NAN; kv.len()], vec![f32::NAN; heads]);
    let bytes = context.sparse_attention_backward_workspace_size(Some(&params), rows as i64, topk as i64, tokens as i64, d_qk as i64).unwrap();
    let mut memory = aligned_bytes(bytes);
    context
        .sparse_attention_backward(
            &params,
            &TensorView::new(&q, &[rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&kv, &[tokens as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&indices, &[rows as i64, topk as i64]).unwrap(),
            Some(&TensorView::new(&sink, &[heads as i64]).unwrap()),
            None,
            &TensorView::new(&out, &[rows as i64, heads as i64, d_v as i64]).unwrap(),
            &TensorView::new(&lse, &[rows as i64, heads as i64]).unwrap(),
            &TensorView::new(&dout, &[rows as i64, heads as i64, d_v as i64]).unwrap(),
            &mut TensorViewMut::new(&mut dq, &[rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &mut TensorViewMut::new(&mut dkv, &[tokens as i64, d_qk as i64]).unwrap(),
            Some(&mut TensorViewMut::new(&mut d_sink, &[heads as i64]).unwrap()),
            Some(&mut Workspace::new(&mut as_bytes(&mut memory)[..bytes])),
            Stream::DEFAULT,
        )
        .unwrap();
    // d/dx of sum(dout * out) by central differences of the f64 forward, for q, kv and the sink.
    let loss = |q: &[f64], kv: &[f64], sink: &[f64]| -> f64 { forward_f64(q, kv, &indices, sink, shape).0.iter().zip(&dout).map(|(o, d)| o * *d as f64).sum() };
    for (name, got, which) in [("dq", &dq, 0), ("dkv", &dkv, 1), ("d_attn_sink", &d_sink, 2)] {
        for (i, &value) in got.iter().enumerate() {
            let mut inputs = [as_f64(&q), as_f64(&kv), as_f64(&sink)];
            inputs[which][i] += 1e-6;
            let up = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][i] -= 2e-6;
            let down = loss(&inputs[0], &inputs[1], &inputs[2]);
            assert_close(value, (up - down) / 2e-6, 1e-4, &format!("{name}[{i}]"));
        }
    }
    assert!(dq[2 * heads * d_qk..].iter().all(|&v| v == 0.0), "the row without a valid index");

    let error = context
        .sparse_attention_backward(
            &SparseAttentionBackwardParams { scale: 0.0, ..params },
            &TensorView::new(&q, &[rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&kv, &[tokens as i64, d_qk as i64]).unwrap(),
            &TensorView::new(&indices, &[rows as i64, topk as i64]).unwrap(),
            None,
            None,
            &TensorView::new(&out, &[rows as i64, heads as i64, d_v as i64]).unwrap(),
            &TensorView::new(&lse, &[rows as i64, heads as i64]).unwrap(),
            &TensorView::new(&dout, &[rows as i64, heads as i64, d_v as i64]).unwrap(),
            &mut TensorViewMut::new(&mut dq, &[rows as i64, heads as i64, d_qk as i64]).unwrap(),
            &mut TensorViewMut::new(&mut dkv, &[tokens as i64, d_qk as i64]).unwrap(),
            None,
            None,
            Stream::DEFAULT,
        )
        .unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidArgument), "{error}");
    assert!(error.message().starts_with("params.scale"), "{error}");
}
