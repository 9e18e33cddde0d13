//! Finds libdsa: DSA_LIB_DIR (a directory holding libdsa.so) if set, else `pkg-config dsa`.
//! No crates: pkg-config is run directly so that the workspace builds offline.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DSA_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Some(dir) = env::var_os("DSA_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
        println!("cargo:rustc-link-lib=dylib=dsa");
        return;
    }
    let output = Command::new("pkg-config").args(["--libs", "dsa"]).output();
    let libs = match output {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).into_owned(),
        Ok(output) => panic!(
            "dsa-sys: `pkg-config --libs dsa` failed ({}); set DSA_LIB_DIR to the directory \
             holding libdsa.so or PKG_CONFIG_PATH to the one holding dsa.pc",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("dsa-sys: cannot run pkg-config ({error}); set DSA_LIB_DIR to the directory holding libdsa.so"),
    };
    for flag in libs.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(name) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
    }
}
