package dsa_test

import (
	"errors"
	"fmt"
	"log"

	"libdsa/dsa"
)

// The Go snippet of the top-level README.md.
func Example() {
	context, err := dsa.NewContext(nil) // CPU, all cores
	if err != nil {
		log.Fatal(err)
	}
	defer context.Close() // a finalizer is only a safety net
	x, q, scales := make([]float32, 4*128), make([]dsa.Float8E4M3, 4*128), make([]float32, 4)
	xv, _ := dsa.NewTensor(x, 4, 128)
	qv, _ := dsa.NewTensor(q, 4, 128)
	sv, _ := dsa.NewTensor(scales, 4, 1)
	params := dsa.DefaultQuantizeFP8Params()
	params.GroupSize = 100 // does not divide 128
	err = context.QuantizeFP8(&params, xv, qv, sv, dsa.DefaultStream)
	var failure *dsa.Error
	if errors.As(err, &failure) {
		fmt.Println(failure.Status, "/", failure.Message)
	}
	// Output: invalid argument / params.group_size: 100 does not divide the last dimension N = 128
}
