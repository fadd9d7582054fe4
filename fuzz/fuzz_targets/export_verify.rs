//! `conclave export verify` on a bundle an attacker wrote: an arbitrary `manifest.json`
//! beside a data file `messages.jsonl` (`{"seq":1}` and a newline) and, by the input's
//! first byte, `files/a.bin` (`attachment`) too. Inputs whose first byte is odd are signed
//! with a key the verifier trusts, so the file checks behind the signature are reached;
//! the others carry no valid signature and the manifest's own key is trusted, as `verify`
//! does without `--key`. Whatever the bundle, verify never panics, and it never calls a
//! bundle intact while its manifest names a file outside the bundle's directory.
#![no_main]

use conclave_audit::exports::{Manifest, Verification, verify};
use conclave_crypto::CheckpointKey;
use libfuzzer_sys::fuzz_target;
use std::path::{Component, Path};
use std::sync::OnceLock;

struct Fixture {
    root: tempfile::TempDir,
    key: CheckpointKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    // In memory where the machine has /dev/shm: each run rewrites the bundle.
    let shm = std::path::Path::new("/dev/shm");
    FIXTURE.get_or_init(|| Fixture {
        root: if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory"),
        key: CheckpointKey::from_base64(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [7u8; 32],
        ))
        .expect("a fixed test key"),
    })
}

fn inside(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, manifest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let dir = fixture.root.path().join("bundle");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    std::fs::write(dir.join("messages.jsonl"), b"{\"seq\":1}\n").unwrap();
    if flags & 2 != 0 {
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/a.bin"), b"attachment").unwrap();
    }
    let result = if flags & 1 != 0 {
        let signature = fixture.key.sign_manifest(manifest);
        std::fs::write(
            dir.join("manifest.sig"),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature),
        )
        .unwrap();
        verify(&dir, Some(&fixture.key.public_key_base64()))
    } else {
        std::fs::write(dir.join("manifest.sig"), b"c2lnbmF0dXJl").unwrap();
        verify(&dir, None)
    };
    if let Ok(Verification::Intact { .. }) = result {
        let manifest: Manifest =
            serde_json::from_slice(manifest).expect("an intact bundle has a manifest");
        for name in manifest.files.keys() {
            assert!(
                inside(name),
                "intact bundle names {name:?}, outside the bundle"
            );
        }
    }
});
