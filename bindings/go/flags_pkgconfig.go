//go:build dsa_pkgconfig

package dsa

// #cgo pkg-config: dsa
import "C"
