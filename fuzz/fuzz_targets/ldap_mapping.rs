//! LDAP directory entries (what a directory, or whoever controls one, returns for a
//! search) through `DirectoryEntry::from_search` and the profile mapping, plus the RFC
//! 4515 filter escaping of what users type as a username. An escaped value never carries
//! a filter metacharacter; no entry panics the mapping. Input: one JSON object (see the
//! seeds in `fuzz/corpus/ldap_mapping`).
#![no_main]

use conclave_auth::identity::config::LdapConfig;
use conclave_auth::identity::ldap::{Directory, DirectoryEntry, escape_filter_value, user_filter};
use conclave_auth::identity::mapping::{self, GroupMappings};
use conclave_core::Role;
use ldap3::SearchEntry;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

#[derive(serde::Deserialize, Debug, Default)]
#[serde(default)]
struct Input {
    typed_username: String,
    dn: String,
    attrs: HashMap<String, Vec<String>>,
    bin_attrs: HashMap<String, Vec<Vec<u8>>>,
    active_directory: bool,
}

fn directory(active_directory: bool) -> &'static Directory {
    static OPENLDAP: OnceLock<Directory> = OnceLock::new();
    static AD: OnceLock<Directory> = OnceLock::new();
    let make = |ad: bool| {
        let mut config = LdapConfig {
            url: "ldap://127.0.0.1:389".into(),
            role_mappings: BTreeMap::from([(
                "cn=admins,ou=groups,dc=example,dc=gov".to_owned(),
                vec![Role::Admin],
            )]),
            security_group_mappings: BTreeMap::from([(
                "CN=Staff, OU=Groups, DC=example, DC=gov".to_owned(),
                "Staff".to_owned(),
            )]),
            ..LdapConfig::default()
        };
        if ad {
            config.username_attribute = "sAMAccountName".into();
            config.id_attribute = "objectGUID".into();
        }
        Directory::new(&config).expect("a directory without files")
    };
    if active_directory {
        AD.get_or_init(|| make(true))
    } else {
        OPENLDAP.get_or_init(|| make(false))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let escaped = escape_filter_value(&input.typed_username);
    assert!(
        !escaped
            .bytes()
            .any(|b| matches!(b, b'*' | b'(' | b')' | 0) || b >= 0x80),
        "escaped value still carries a metacharacter: {escaped:?}"
    );
    let filter = user_filter("(objectClass=person)", "uid", &input.typed_username);
    assert_eq!(filter.matches('(').count(), filter.matches(')').count());

    let directory = directory(input.active_directory);
    let entry = SearchEntry {
        dn: input.dn,
        attrs: input.attrs,
        bin_attrs: input.bin_attrs,
    };
    let entry = DirectoryEntry::from_search(entry, &directory.config.id_attribute);
    let _ = entry.is_disabled();
    let _ = directory.subject(&entry);
    if let Ok(profile) = directory.profile(&entry) {
        assert!(!profile.subject.is_empty());
        let mappings: GroupMappings<'_> = directory.mappings();
        let roles = mapping::mapped_roles(&mappings, &profile.groups);
        assert!(roles.is_some_and(|r| r.check_separation_of_duties().is_ok()));
        let _ = mapping::mapped_security_groups(&mappings, &profile.groups);
    }
});
