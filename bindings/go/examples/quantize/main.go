// Quantises a batch of activations to FP8 with libdsa, dequantises it, prints the round-trip
// error, then shows a refused call. Exits non-zero if anything behaves unexpectedly.
package main

import (
	"errors"
	"fmt"
	"log"
	"math"

	"libdsa/dsa"
)

func main() {
	const rows, dim = 64, 128
	fmt.Println(dsa.BuildInfo())
	context, err := dsa.NewContext(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer context.Close()

	x := make([]float32, rows*dim)
	for i := range x {
		x[i] = (float32(i*7919%1000)/500 - 1) * float32(1+i%5)
	}
	codes, scales, back := make([]dsa.Float8E4M3, rows*dim), make([]float32, rows), make([]float32, rows*dim)
	xView, _ := dsa.NewTensor(x, rows, dim)
	codeView, _ := dsa.NewTensor(codes, rows, dim)
	scaleView, _ := dsa.NewTensor(scales, rows, 1)
	backView, _ := dsa.NewTensor(back, rows, dim)
	params := dsa.DefaultQuantizeFP8Params()
	params.ScaleFormat = dsa.ScaleFormatUE8M0
	if err := context.QuantizeFP8(&params, xView, codeView, scaleView, dsa.DefaultStream); err != nil {
		log.Fatal(err)
	}
	if err := context.DequantizeFP8(&params, codeView, scaleView, backView, dsa.DefaultStream); err != nil {
		log.Fatal(err)
	}
	var errorNorm, norm float64
	for i := range x {
		errorNorm += math.Pow(float64(back[i]-x[i]), 2)
		norm += math.Pow(float64(x[i]), 2)
	}
	relative := math.Sqrt(errorNorm / norm)
	fmt.Printf("FP8 round trip of %dx%d values: relative error %.4f\n", rows, dim, relative)
	if relative > 0.05 {
		log.Fatal("round-trip error too large")
	}

	// A group size that does not divide the row is refused, and the outputs stay untouched.
	params.GroupSize = 100
	err = context.QuantizeFP8(&params, xView, codeView, scaleView, dsa.DefaultStream)
	var failure *dsa.Error
	if !errors.As(err, &failure) || failure.Status != dsa.StatusInvalidArgument {
		log.Fatalf("expected an invalid-argument error, got %v", err)
	}
	fmt.Println("refused as expected:", err)
}
