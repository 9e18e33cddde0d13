//go:build !dsa_pkgconfig

package dsa

// Default: link -ldsa and find dsa.h and libdsa through the compiler's paths, extended with
// CGO_CFLAGS=-I<dir of dsa.h> and CGO_LDFLAGS=-L<dir of libdsa.so>. Build with -tags
// dsa_pkgconfig to ask pkg-config (dsa.pc) instead.

// #cgo LDFLAGS: -ldsa
import "C"
