//! Configuration files: arbitrary text as `conclave.toml` through the settings loader
//! (figment, serde with `deny_unknown_fields`, then `validate`). Any text is either a
//! configuration or an error naming a key; a configuration that loads must still pass
//! its own validation (what `conclave config check` prints as valid is valid).
#![no_main]

use conclave_server::settings::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = Settings::from_toml_str(text) {
        settings
            .validate()
            .expect("a loaded configuration validates");
        let _ = settings.public_url();
        let _ = settings.session_policy();
        let _ = settings.login_throttle();
    }
});
