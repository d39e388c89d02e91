//! Fuzzes the archive readers (format sniffing, decompression, the ACI tar
//! scan and the appc manifest parser) through a real import into a store
//! kept for the whole run.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

struct Fixture {
    dir: tempfile::TempDir,
    store: imgstore::Store,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // /dev/shm keeps the store's fsyncs from dominating the run.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() { tempfile::tempdir_in(base) } else { tempfile::tempdir() }.unwrap();
        let store = imgstore::Store::open(dir.path().join("store")).unwrap();
        Fixture { dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    checks::import_archive(&f.store, f.dir.path(), data);
});
