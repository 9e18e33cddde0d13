//! The safe API against the real library on the CPU: data reaches libdsa and comes back in the
//! right places, and failures become `dsa::Error` with libdsa's code and message.
use dsa::{Bf16, Context, ContextOptions, DType, Device, Fp8E4M3, Status, Stream, TensorView, TensorViewMut};

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
