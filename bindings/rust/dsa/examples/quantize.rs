//! Quantises a batch of activations to FP8 with libdsa, dequantises it, prints the round-trip
//! error, then shows a refused call. Exits non-zero if anything behaves unexpectedly.
use dsa::{Context, Fp8E4M3, QuantizeFp8Params, ScaleFormat, Status, Stream, TensorView, TensorViewMut};

fn main() -> Result<(), dsa::Error> {
    const ROWS: usize = 64;
    const DIM: usize = 128;
    println!("{}", dsa::build_info());
    let context = Context::new()?;
    let x: Vec<f32> = (0..ROWS * DIM).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1 + i % 5) as f32).collect();
    let (mut codes, mut scales, mut back) = (vec![Fp8E4M3::default(); ROWS * DIM], vec![0f32; ROWS], vec![0f32; ROWS * DIM]);
    let params = QuantizeFp8Params { scale_format: ScaleFormat::UE8M0, ..Default::default() };
    let shape = [ROWS as i64, DIM as i64];
    context.quantize_fp8(
        Some(&params),
        &TensorView::new(&x, &shape)?,
        &mut TensorViewMut::new(&mut codes, &shape)?,
        &mut TensorViewMut::new(&mut scales, &[ROWS as i64, 1])?,
        Stream::DEFAULT,
    )?;
    context.dequantize_fp8(
        Some(&params),
        &TensorView::new(&codes, &shape)?,
        &TensorView::new(&scales, &[ROWS as i64, 1])?,
        &mut TensorViewMut::new(&mut back, &shape)?,
        Stream::DEFAULT,
    )?;
    let error: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
    println!("FP8 round trip of {ROWS}x{DIM} values: relative error {:.4}", error / norm);
    assert!(error / norm < 0.05, "round-trip error too large");

    // A group size that does not divide the row is refused, and the outputs stay untouched.
    let refused = context.quantize_fp8(
        Some(&QuantizeFp8Params { group_size: 100, ..params }),
        &TensorView::new(&x, &shape)?,
        &mut TensorViewMut::new(&mut codes, &shape)?,
        &mut TensorViewMut::new(&mut scales, &[ROWS as i64, 1])?,
        Stream::DEFAULT,
    );
    match refused {
        Err(error) if error.status() == Some(Status::InvalidArgument) => println!("refused as expected: {error}"),
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
    Ok(())
}
