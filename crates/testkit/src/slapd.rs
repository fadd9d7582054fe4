//! A throwaway OpenLDAP server (Debian's `slapd`) for tests: its own `slapd.conf`, MDB
//! directory and TLS certificates (a fresh CA made with `openssl`) in a temporary
//! directory, on free loopback ports for `ldap://` (with StartTLS) and `ldaps://`,
//! seeded with `ou=people` and `ou=groups`. Stopped and removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const SUFFIX: &str = "dc=example,dc=gov";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=gov";
pub const ADMIN_PASSWORD: &str = "adminpw";

/// The seed: alice (groups conclave-admins, staff), bob (staff), carol (none).
pub const SEED: &str = "dn: dc=example,dc=gov
objectClass: dcObject
objectClass: organization
o: Example Gov
dc: example

dn: ou=people,dc=example,dc=gov
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=gov
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=gov
objectClass: inetOrgPerson
uid: alice
cn: Alice Anders
sn: Anders
mail: alice@example.gov
userPassword: alicepw

dn: uid=bob,ou=people,dc=example,dc=gov
objectClass: inetOrgPerson
uid: bob
cn: Bob Brown
sn: Brown
mail: bob@example.gov
userPassword: bobpw

dn: uid=carol,ou=people,dc=example,dc=gov
objectClass: inetOrgPerson
uid: carol
cn: Carol Chen
sn: Chen
mail: carol@example.gov
userPassword: carolpw

dn: cn=conclave-admins,ou=groups,dc=example,dc=gov
objectClass: groupOfNames
cn: conclave-admins
member: uid=alice,ou=people,dc=example,dc=gov

dn: cn=staff,ou=groups,dc=example,dc=gov
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,dc=example,dc=gov
member: uid=bob,ou=people,dc=example,dc=gov
";

pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
}

/// Whether this machine has slapd (`.ci/run` installs it).
pub fn available() -> bool {
    Path::new("/usr/sbin/slapd").exists() && Path::new("/usr/bin/ldapadd").exists()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn run(cmd: &mut Command) {
    let output = cmd.output().expect("run a command");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Slapd {
    /// Starts a seeded server.
    pub fn start() -> Self {
        assert!(
            available(),
            "slapd and ldap-utils are needed: apt-get install slapd ldap-utils"
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path();
        for sub in ["run", "data", "tls"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        make_certificates(&root.join("tls"));
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
pidfile {root}/run/slapd.pid
argsfile {root}/run/slapd.args
TLSCACertificateFile {root}/tls/ca.pem
TLSCertificateFile {root}/tls/server.pem
TLSCertificateKeyFile {root}/tls/server.key
sizelimit unlimited
database mdb
maxsize 104857600
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PASSWORD}
directory {root}/data
index objectClass eq
index uid,mail,cn eq,sub
index member,memberOf eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
",
            root = root.display()
        );
        std::fs::write(root.join("slapd.conf"), conf).unwrap();
        for _attempt in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let status = Command::new("/usr/sbin/slapd")
                .arg("-f")
                .arg(root.join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run slapd");
            if !status.success() {
                continue; // a port clash: try others
            }
            let slapd = Self {
                dir,
                port,
                tls_port,
            };
            if slapd.wait_ready() {
                slapd.add(SEED);
                return slapd;
            }
            drop(slapd);
            panic!("slapd did not become ready");
        }
        panic!("slapd did not start");
    }

    fn wait_ready(&self) -> bool {
        for _ in 0..400 {
            let ok = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-b", "", "-s", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    fn tool(&self, tool: &str, ldif: &str) {
        let path = self
            .dir
            .path()
            .join(format!("change-{}.ldif", uuid::Uuid::new_v4()));
        std::fs::write(&path, ldif).unwrap();
        run(Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(&path));
        let _ = std::fs::remove_file(path);
    }

    /// Adds the entries of an LDIF.
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", ldif);
    }

    /// Applies an LDIF of changes (`changetype: modify`, `modrdn`, `delete`).
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", ldif);
    }

    pub fn delete(&self, dn: &str) {
        run(Command::new("ldapdelete").args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PASSWORD,
            dn,
        ]));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("run/slapd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            // Let it release the MDB files before the directory goes.
            for _ in 0..100 {
                if !self.dir.path().join("run/slapd.pid").exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made with openssl.
fn make_certificates(dir: &Path) {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Conclave Test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.pem"),
    ]));
}

/// `count` generated users `user00000`… under ou=people, as one LDIF.
pub fn generated_users(count: usize) -> String {
    let mut ldif = String::with_capacity(count * 200);
    for i in 0..count {
        ldif.push_str(&format!(
            "dn: uid=user{i:05},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: user{i:05}\ncn: User {i}\nsn: {i}\nmail: user{i:05}@example.gov\n\n"
        ));
    }
    ldif
}
