//! Raw declarations of libdsa's C ABI, generated from `capi/include/dsa.h` by the bindgen
//! command-line tool (see `bindings/rust/regenerate.sh`); `cargo test` runs bindgen's layout tests.
//! Everything here is `unsafe` to call; the `dsa` crate is the safe API.
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]

include!("bindings.rs");
